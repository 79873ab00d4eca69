// mdfi_requant_trunc.v -- a DELIBERATELY WRONG variant of mdfi_requant, for demonstrating
// that the golden-vector check catches it.
//
// The bug: the rounding mode is ignored and every right shift truncates (floor(x / 2^s),
// the plain `x >>> s` many first RTL drafts contain) instead of rounding half up.  The
// result is off by one LSB whenever the dropped bits are >= 1/2, i.e. on roughly half of all
// values, and never by more -- small enough to survive a "looks about right" review, and
// exactly what `mdfi verify` reports with its rounding hint.
//
// Same ports and parameters as mdfi_requant.

`timescale 1ns/1ps

module mdfi_requant_trunc #(
    parameter ACC_BITS = 29,
    parameter OUT_BITS = 8
) (
    input  wire                       clk,
    input  wire                       rst_n,
    input  wire [1:0]                 cfg_act,
    input  wire                       cfg_rnd,    // BUG: ignored
    input  wire signed [OUT_BITS-1:0] cfg_zero_out,
    input  wire                       in_valid,
    input  wire signed [ACC_BITS-1:0] in_acc,
    input  wire signed [7:0]          in_shift,
    output wire                       out_valid,
    output wire signed [OUT_BITS-1:0] out_q
);
    mdfi_requant #(.ACC_BITS(ACC_BITS), .OUT_BITS(OUT_BITS)) u_requant (
        .clk(clk), .rst_n(rst_n),
        .cfg_act(cfg_act),
        .cfg_rnd(1'b1),                           // BUG: always truncate
        .cfg_zero_out(cfg_zero_out),              // (the zero point is handled correctly)
        .in_valid(in_valid), .in_acc(in_acc), .in_shift(in_shift),
        .out_valid(out_valid), .out_q(out_q)
    );
endmodule
