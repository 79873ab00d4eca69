"""mdfi.progress.StatusLine: the status-line writer under every progress display."""

import io

from mdfi.progress import StatusLine


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_terminal_rewrites_in_place_and_pads_over_longer_text():
    s, clock = FakeTTY(), Clock()
    line = StatusLine(s, interval_tty=1.0, clock=clock)
    line.write("calibrating: 1/2 long-name.png")
    line.write("calib: 2/2")
    line.end_line()
    line.end_line()                                  # nothing more to finish
    assert s.getvalue() == ("\rcalibrating: 1/2 long-name.png"
                            "\rcalib: 2/2" + " " * 20 + "\n")


def test_log_gets_whole_lines_and_final_adds_nothing():
    s = io.StringIO()
    line = StatusLine(s)
    line.write("a")
    line.write("b", final=True)
    line.end_line()
    assert s.getvalue() == "a\nb\n"


def test_throttle_per_mode():
    clock = Clock()
    tty, log = FakeTTY(), io.StringIO()
    a = StatusLine(tty, interval_tty=0.5, interval_log=5.0, clock=clock)
    b = StatusLine(log, interval_tty=0.5, interval_log=5.0, clock=clock)
    wrote = []
    for t in (0.0, 0.4, 0.6, 4.0, 5.0, 5.2):
        clock.t = t
        wrote.append((a.update(f"t{t}"), b.update(f"t{t}")))
    assert wrote == [(True, True), (False, False), (True, False), (True, False),
                     (True, True), (False, False)]
    assert b.update("forced", force=True)
    assert log.getvalue() == "t0.0\nt5.0\nforced\n"


def test_disabled_writes_nothing():
    s = FakeTTY()
    line = StatusLine(s, enabled=False)
    line.write("x", final=True)
    line.end_line()
    assert s.getvalue() == ""


def test_a_stream_without_isatty_is_a_log():
    class Bare:
        def __init__(self):
            self.out = []

        def write(self, t):
            self.out.append(t)

        def flush(self):
            pass

    b = Bare()
    StatusLine(b).write("x")
    assert b.out == ["x\n"]
