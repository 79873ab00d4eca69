// tb_requant.v -- drives MDFI golden vectors through mdfi_requant and writes its outputs.
//
// Reads (with $readmemh, the golden .hex format of docs/golden-format.md):
//   +acc=FILE     lNNN.acc.hex    C*HW accumulator values, ACC_BITS two's complement, CHW
//                                 order: line (c*H + y)*W + x is element (c, y, x)
//   +shift=FILE   lNNN.shift.hex  C shifts, 8-bit two's complement, one per output channel
// Writes:
//   +out=FILE     lNNN.out.hex    C*HW outputs in the same canonical format (OUT_BITS two's
//                                 complement, zero-padded lower-case hex, one per line), so
//                                 it is byte-identical to the golden file iff the DUT is exact
// Options:
//   +act=linear|leaky|relu        (default linear)     the layer's activation
//   +rounding=half_up|truncate    (default half_up)    the layer's rounding mode
//   +zero_out=N                   (default 0)          the output zero point (model.txt zero_out=,
//                                                      decimal, may be negative; docs/golden-format.md
//                                                      "Zero points")
//   +bubbles=N                    drop in_valid on about 1 cycle in N (default 5; 0 = never)
//
// Compile-time parameters (they size the memories): ACC_BITS, OUT_BITS, C, HW (= H*W).
// The DUT module is selected with -DDUT=<module> (default mdfi_requant).
//
//   iverilog -g2005 -DDUT=mdfi_requant -Ptb_requant.ACC_BITS=26 -Ptb_requant.OUT_BITS=8 \
//            -Ptb_requant.C=256 -Ptb_requant.HW=169 -o tb.vvp tb_requant.v mdfi_requant.v
//   vvp -n tb.vvp +acc=g/l013.acc.hex +shift=g/l013.shift.hex +out=dut/l013.out.hex +act=leaky \
//       +zero_out=-83
//
// Prints "tb_requant: DONE ..." on success; "tb_requant: ERROR ..." and exit code 1 otherwise.

`timescale 1ns/1ps
`ifndef DUT
`define DUT mdfi_requant
`endif
// exit status 1 on error under Icarus (vvp); plain $finish elsewhere
`ifdef __ICARUS__
`define TB_FAIL $finish_and_return(1)
`else
`define TB_FAIL $finish
`endif

module tb_requant;
    parameter ACC_BITS = 29;
    parameter OUT_BITS = 8;
    parameter C  = 1;
    parameter HW = 1;
    localparam N = C * HW;

    reg  [ACC_BITS-1:0] acc_mem   [0:N-1];
    reg  [7:0]          shift_mem [0:C-1];
    reg  [OUT_BITS-1:0] out_mem   [0:N-1];

    reg  [8*1024-1:0] acc_file, shift_file, out_file;
    reg  [8*16-1:0]   act_name, rnd_name;
    integer bubbles, zero_out;

    reg                       clk = 1'b0;
    reg                       rst_n = 1'b0;
    reg  [1:0]                cfg_act = 2'd0;
    reg                       cfg_rnd = 1'b0;
    reg  signed [OUT_BITS-1:0] cfg_zero_out = 0;
    reg                       in_valid = 1'b0;
    reg  signed [ACC_BITS-1:0] in_acc = 0;
    reg  signed [7:0]          in_shift = 0;
    wire                      out_valid;
    wire signed [OUT_BITS-1:0] out_q;

    `DUT #(.ACC_BITS(ACC_BITS), .OUT_BITS(OUT_BITS)) dut (
        .clk(clk), .rst_n(rst_n), .cfg_act(cfg_act), .cfg_rnd(cfg_rnd), .cfg_zero_out(cfg_zero_out),
        .in_valid(in_valid), .in_acc(in_acc), .in_shift(in_shift),
        .out_valid(out_valid), .out_q(out_q)
    );

    always #5 clk = ~clk;

    // collect every output the DUT produces, in order
    integer n_out = 0;
    integer n_bad = 0;
    always @(posedge clk) begin
        if (rst_n && out_valid) begin
            if (n_out < N) out_mem[n_out] = out_q;
            if (^out_q === 1'bx) n_bad = n_bad + 1;
            n_out = n_out + 1;
        end
    end

    integer i, fd, seed, cycles;
    initial begin
        if (!$value$plusargs("acc=%s", acc_file) || !$value$plusargs("shift=%s", shift_file)
            || !$value$plusargs("out=%s", out_file)) begin
            $display("tb_requant: ERROR: need +acc=FILE +shift=FILE +out=FILE");
            `TB_FAIL;
        end
        if (!$value$plusargs("act=%s", act_name)) act_name = "linear";
        if (!$value$plusargs("rounding=%s", rnd_name)) rnd_name = "half_up";
        if (!$value$plusargs("bubbles=%d", bubbles)) bubbles = 5;
        if (!$value$plusargs("zero_out=%d", zero_out)) zero_out = 0;
        // the zero point is a code of the output format (docs/fixed-point.md 1.1)
        if (zero_out < -(1 << (OUT_BITS - 1)) || zero_out >= (1 << (OUT_BITS - 1))) begin
            $display("tb_requant: ERROR: +zero_out=%0d outside the %0d-bit output range", zero_out, OUT_BITS);
            `TB_FAIL;
        end
        cfg_zero_out = zero_out;

        if (act_name == "linear") cfg_act = 2'd0;
        else if (act_name == "leaky") cfg_act = 2'd1;
        else if (act_name == "relu") cfg_act = 2'd2;
        else begin
            $display("tb_requant: ERROR: unknown +act=%0s", act_name);
            `TB_FAIL;
        end
        if (rnd_name == "half_up") cfg_rnd = 1'b0;
        else if (rnd_name == "truncate") cfg_rnd = 1'b1;
        else begin
            $display("tb_requant: ERROR: unknown +rounding=%0s", rnd_name);
            `TB_FAIL;
        end

        // $readmemh leaves missing words at x: check both ends so a short file is an error
        $readmemh(acc_file, acc_mem);
        $readmemh(shift_file, shift_mem);
        for (i = 0; i < N; i = i + 1)
            if (^acc_mem[i] === 1'bx) begin
                $display("tb_requant: ERROR: %0s: word %0d missing or not hex (need %0d)",
                         acc_file, i, N);
                `TB_FAIL;
            end
        for (i = 0; i < C; i = i + 1)
            if (^shift_mem[i] === 1'bx) begin
                $display("tb_requant: ERROR: %0s: word %0d missing or not hex (need %0d)",
                         shift_file, i, C);
                `TB_FAIL;
            end

        // reset, then stream all N values; channel c = i / HW uses shift_mem[c]
        repeat (3) @(posedge clk);
        #1 rst_n = 1'b1;
        seed = 1;
        i = 0;
        while (i < N) begin
            @(posedge clk);
            #1;
            if (bubbles > 0 && ($random(seed) % bubbles) == 0) begin
                in_valid = 1'b0;
                in_acc   = {ACC_BITS{1'bx}};    // data is don't-care without valid
                in_shift = 8'bx;
            end else begin
                in_valid = 1'b1;
                in_acc   = acc_mem[i];
                in_shift = shift_mem[i / HW];
                i = i + 1;
            end
        end
        @(posedge clk);
        #1 in_valid = 1'b0;

        // drain (latency is whatever the DUT has; give up after 1000 idle cycles)
        cycles = 0;
        while (n_out < N && cycles < 1000) begin
            @(posedge clk);
            cycles = cycles + 1;
        end
        repeat (4) @(posedge clk);
        if (n_out != N) begin
            $display("tb_requant: ERROR: %0d outputs for %0d inputs", n_out, N);
            `TB_FAIL;
        end
        if (n_bad != 0) begin
            $display("tb_requant: ERROR: %0d outputs contain x/z", n_bad);
            `TB_FAIL;
        end

        fd = $fopen(out_file, "w");
        if (fd == 0) begin
            $display("tb_requant: ERROR: cannot write %0s", out_file);
            `TB_FAIL;
        end
        for (i = 0; i < N; i = i + 1)
            $fwrite(fd, "%h\n", out_mem[i]);   // %h: zero-padded to ceil(OUT_BITS/4), lower case
        $fclose(fd);
        $display("tb_requant: DONE %0d values (C=%0d, HW=%0d, ACC_BITS=%0d, OUT_BITS=%0d, act=%0s, rounding=%0s, zero_out=%0d) -> %0s",
                 N, C, HW, ACC_BITS, OUT_BITS, act_name, rnd_name, zero_out, out_file);
        $finish;
    end
endmodule
