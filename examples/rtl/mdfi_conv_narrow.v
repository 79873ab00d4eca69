// mdfi_conv_narrow.v -- a DELIBERATELY WRONG variant of mdfi_conv, for demonstrating that the
// golden-vector check catches it and names it.
//
// The bug: the accumulator registers are narrower than the values they must hold, so large
// sums wrap around (two's complement) -- the classic "accumulator one bit too narrow" of a
// datapath sized from simulation statistics instead of from the proven bound acc_bits
// (docs/fixed-point.md section 3.2).  The requantizer still gets ACC_BITS (sign-extended),
// so everything else is the correct design.  mdfi verify reports the wrap with the hint
// "accumulator wraps around at NARROW_BITS bits", from the out dump alone.
//
// Same ports and parameters as mdfi_conv, plus NARROW_BITS (the faulty register width).

`timescale 1ns/1ps

module mdfi_conv_narrow #(
    parameter TM = 8, parameter TP = 8, parameter WBITS = 8, parameter ABITS = 8,
    parameter ACC_BITS = 29,
    parameter ACC_REG_BITS = ACC_BITS,   // ignored: the bug replaces it
    parameter NARROW_BITS = ACC_BITS - 1,
    parameter OUT_BITS = 8, parameter AW = 24, parameter DW = 16
) (
    input  wire clk, input wire rst_n,
    input  wire [DW-1:0] cfg_c, input wire [DW-1:0] cfg_h, input wire [DW-1:0] cfg_w,
    input  wire [AW-1:0] cfg_hw, input wire [DW-1:0] cfg_m, input wire [3:0] cfg_k,
    input  wire [3:0] cfg_stride, input wire [3:0] cfg_pad, input wire [ABITS-1:0] cfg_pad_value,
    input  wire [DW-1:0] cfg_ow,
    input  wire [AW-1:0] cfg_ohw, input wire [AW-1:0] cfg_ckk,
    input  wire [DW-1:0] cfg_oy_first, input wire [DW-1:0] cfg_oy_step, input wire [DW-1:0] cfg_oy_count,
    input  wire signed [DW:0] cfg_iy_first, input wire [DW-1:0] cfg_iy_step,
    input  wire signed [AW:0] cfg_iyw_first, input wire [AW-1:0] cfg_iyw_step,
    input  wire [AW-1:0] cfg_oyw_first, input wire [AW-1:0] cfg_oyw_step,
    input  wire [1:0] cfg_act, input wire cfg_rnd, input wire cfg_in_unsigned,
    input  wire signed [OUT_BITS-1:0] cfg_zero_out,
    input  wire start, output wire busy, output wire done,
    output wire [TP*AW-1:0] act_addr, input wire [TP*ABITS-1:0] act_rdata,
    output wire [AW-1:0] w_addr, input wire [TM*WBITS-1:0] w_rdata,
    output wire [AW-1:0] bs_addr, input wire [TM*ACC_BITS-1:0] bias_rdata, input wire [TM*8-1:0] shift_rdata,
    output wire out_valid, output wire [AW-1:0] out_addr, output wire [OUT_BITS-1:0] out_data
);
    mdfi_conv #(.TM(TM), .TP(TP), .WBITS(WBITS), .ABITS(ABITS), .ACC_BITS(ACC_BITS),
                .ACC_REG_BITS(NARROW_BITS),                       // BUG: too narrow
                .OUT_BITS(OUT_BITS), .AW(AW), .DW(DW)) u_conv (
        .clk(clk), .rst_n(rst_n), .cfg_c(cfg_c), .cfg_h(cfg_h), .cfg_w(cfg_w), .cfg_hw(cfg_hw),
        .cfg_m(cfg_m), .cfg_k(cfg_k), .cfg_stride(cfg_stride), .cfg_pad(cfg_pad),
        .cfg_pad_value(cfg_pad_value), .cfg_ow(cfg_ow),
        .cfg_ohw(cfg_ohw), .cfg_ckk(cfg_ckk), .cfg_oy_first(cfg_oy_first), .cfg_oy_step(cfg_oy_step),
        .cfg_oy_count(cfg_oy_count), .cfg_iy_first(cfg_iy_first), .cfg_iy_step(cfg_iy_step),
        .cfg_iyw_first(cfg_iyw_first), .cfg_iyw_step(cfg_iyw_step), .cfg_oyw_first(cfg_oyw_first),
        .cfg_oyw_step(cfg_oyw_step), .cfg_act(cfg_act), .cfg_rnd(cfg_rnd), .cfg_in_unsigned(cfg_in_unsigned),
        .cfg_zero_out(cfg_zero_out), .start(start), .busy(busy), .done(done), .act_addr(act_addr), .act_rdata(act_rdata),
        .w_addr(w_addr), .w_rdata(w_rdata), .bs_addr(bs_addr), .bias_rdata(bias_rdata),
        .shift_rdata(shift_rdata), .out_valid(out_valid), .out_addr(out_addr), .out_data(out_data));
endmodule
