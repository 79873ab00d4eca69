// tb_conv_top.v -- the HDL side of the cocotb test bench for mdfi_conv (cocotb_conv.py).
//
// Holds the memories (loaded with $readmemh from the files named by plusargs, which
// run_cocotb.py prepares from a golden export) and their one-clock read ports, and
// instantiates the engine (mdfi_conv, or with -DNARROW=B the faulty mdfi_conv_narrow).  Everything else -- clock, reset, the layer descriptor, start,
// collecting and checking the outputs -- is done from Python by cocotb.
//
//   +act=FILE    C*H*W activations (the golden lNNN.in0.hex as it is)
//   +wword=FILE  MT*C*K*K words of TM weights (lane i at bits [8i +: 8])
//   +bword=FILE  MT words of TM biases (ACC_BITS each);  +sword=FILE  MT words of TM shifts

`timescale 1ns/1ps

module tb_conv_top #(
    parameter NIN = 16, parameter NWW = 16, parameter MT = 1,
    parameter TM = 8, parameter TP = 8, parameter ACC_BITS = 29, parameter OUT_BITS = 8
) ();
    localparam AW = 24, DW = 16, ABITS = 8, WBITS = 8;
    reg clk = 1'b0, rst_n = 1'b0, start = 1'b0;
    reg [DW-1:0] cfg_c, cfg_h, cfg_w, cfg_m, cfg_ow, cfg_oy_first, cfg_oy_step, cfg_oy_count, cfg_iy_step;
    reg [AW-1:0] cfg_hw, cfg_ohw, cfg_ckk, cfg_iyw_step, cfg_oyw_first, cfg_oyw_step;
    reg signed [DW:0] cfg_iy_first;
    reg signed [AW:0] cfg_iyw_first;
    reg [3:0] cfg_k, cfg_stride, cfg_pad;
    reg [ABITS-1:0] cfg_pad_value;                     // input zero point (model.txt pad_value=)
    reg signed [OUT_BITS-1:0] cfg_zero_out;            // output zero point (model.txt zero_out=)
    reg [1:0] cfg_act;
    reg cfg_rnd, cfg_in_unsigned;

    reg  [ABITS-1:0]       act_mem   [0:NIN-1];
    reg  [TM*WBITS-1:0]    w_word    [0:NWW-1];
    reg  [TM*ACC_BITS-1:0] bias_word [0:MT-1];
    reg  [TM*8-1:0]        shift_word[0:MT-1];
    reg  [8*1024-1:0] f_act, f_w, f_b, f_s;
    initial begin
        if ($value$plusargs("act=%s", f_act)) $readmemh(f_act, act_mem);
        if ($value$plusargs("wword=%s", f_w)) $readmemh(f_w, w_word);
        if ($value$plusargs("bword=%s", f_b)) $readmemh(f_b, bias_word);
        if ($value$plusargs("sword=%s", f_s)) $readmemh(f_s, shift_word);
    end

    wire [TP*AW-1:0]       act_addr;
    reg  [TP*ABITS-1:0]    act_rdata;
    wire [AW-1:0]          w_addr, bs_addr;
    reg  [TM*WBITS-1:0]    w_rdata;
    reg  [TM*ACC_BITS-1:0] bias_rdata;
    reg  [TM*8-1:0]        shift_rdata;
    wire busy, done, out_valid;
    wire [AW-1:0] out_addr;
    wire [OUT_BITS-1:0] out_data;
    integer j;
    always @(posedge clk) begin
        for (j = 0; j < TP; j = j + 1) act_rdata[j*ABITS +: ABITS] <= act_mem[act_addr[j*AW +: AW]];
        w_rdata <= w_word[w_addr];
        bias_rdata <= bias_word[bs_addr];
        shift_rdata <= shift_word[bs_addr];
    end

`ifdef NARROW           // the faulty engine: accumulator registers of NARROW bits
    mdfi_conv_narrow #(.TM(TM), .TP(TP), .ACC_BITS(ACC_BITS), .NARROW_BITS(`NARROW), .OUT_BITS(OUT_BITS),
                       .AW(AW), .DW(DW)) dut (
`else
    mdfi_conv #(.TM(TM), .TP(TP), .ACC_BITS(ACC_BITS), .OUT_BITS(OUT_BITS), .AW(AW), .DW(DW)) dut (
`endif
        .clk(clk), .rst_n(rst_n), .cfg_c(cfg_c), .cfg_h(cfg_h), .cfg_w(cfg_w), .cfg_hw(cfg_hw), .cfg_m(cfg_m),
        .cfg_k(cfg_k), .cfg_stride(cfg_stride), .cfg_pad(cfg_pad), .cfg_pad_value(cfg_pad_value),
        .cfg_ow(cfg_ow), .cfg_ohw(cfg_ohw),
        .cfg_ckk(cfg_ckk), .cfg_oy_first(cfg_oy_first), .cfg_oy_step(cfg_oy_step), .cfg_oy_count(cfg_oy_count),
        .cfg_iy_first(cfg_iy_first), .cfg_iy_step(cfg_iy_step), .cfg_iyw_first(cfg_iyw_first),
        .cfg_iyw_step(cfg_iyw_step), .cfg_oyw_first(cfg_oyw_first), .cfg_oyw_step(cfg_oyw_step),
        .cfg_act(cfg_act), .cfg_rnd(cfg_rnd), .cfg_in_unsigned(cfg_in_unsigned),
        .cfg_zero_out(cfg_zero_out), .start(start), .busy(busy), .done(done),
        .act_addr(act_addr), .act_rdata(act_rdata), .w_addr(w_addr), .w_rdata(w_rdata),
        .bs_addr(bs_addr), .bias_rdata(bias_rdata), .shift_rdata(shift_rdata),
        .out_valid(out_valid), .out_addr(out_addr), .out_data(out_data));
endmodule
