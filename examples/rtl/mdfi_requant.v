// mdfi_requant.v -- MDFI's fused requantize / activation / saturate step (synthesizable).
//
// One output value per accepted input, one register stage (latency 1, throughput 1/clock):
//
//   linear:  out = sat( R(acc / 2^s) + z )
//   relu:    out = sat( R(max(acc, 0) / 2^s) + z )
//   leaky:   out = sat( R(acc / 2^s) + z )                     if acc >= 0
//            out = sat( R(acc * 3277 / 2^(s + 15)) + z )       if acc <  0
//
//   z = cfg_zero_out, the output's zero point (docs/fixed-point.md section 1.1, docs/golden-format.md
//   "Zero points": model.txt zero_out=, 0 when absent): added to the ROUNDED value, after the
//   activation and the shift, before the saturation -- never to acc, never after sat.
//
//   R = half_up:  floor(x / 2^s + 1/2)   ties toward +inf for every sign (2.5 -> 3, -2.5 -> -2)
//   R = truncate: floor(x / 2^s)         toward -inf (-2.5 -> -3)
//   s <= 0:       x * 2^-s, exact, after clamping x to +-2^OUT_BITS (the result saturates
//                 beyond that anyway)
//   sat:          clamp to [-2^(OUT_BITS-1), 2^(OUT_BITS-1) - 1], applied once, to R(..) + z
//                 (the clamp of x for s <= 0 stays exact with z: |z| <= 2^(OUT_BITS-1), so
//                 +-2^OUT_BITS + z still saturates)
//
// Bit-exact twin of mdfi_requantize_zp() in csrc/mdfi_fixedpoint.h and requantize(..., zero=z)
// in mdfi/fixedpoint.py; specification: docs/fixed-point.md sections 1.1 and 2-4.  The leaky slope
// multiplies the wide accumulator BEFORE the single rounding shift (one rounding, not two).
//
// Shifts: the golden model keeps s in [-31, 47] (s + 15 <= 62 for leaky); this module
// computes the exact result for every 8-bit signed shift: right shifts past the operand
// width give 0 (half_up) or the sign (truncate), left shifts saturate any nonzero value.
//
// Configuration inputs (cfg_*) are quasi-static per layer; they use the C enum codes:
//   cfg_act: 0 linear, 1 leaky, 2 relu (3 behaves as linear)   cfg_rnd: 0 half_up, 1 truncate
//   cfg_zero_out: the output zero point, OUT_BITS two's complement (0 for a zero-free layer)
//
// Synthesizable Verilog-2005: no initial blocks, no real types, no system functions, no loops.

`timescale 1ns/1ps

module mdfi_requant #(
    parameter ACC_BITS = 29,          // accumulator width, 2..48 (MDFI_MAX_ACC_BITS)
    parameter OUT_BITS = 8            // output width, 2..16
) (
    input  wire                       clk,
    input  wire                       rst_n,      // synchronous, active low (clears out_valid)
    input  wire [1:0]                 cfg_act,    // 0 linear, 1 leaky, 2 relu
    input  wire                       cfg_rnd,    // 0 half_up (AP_RND), 1 truncate (AP_TRN)
    input  wire signed [OUT_BITS-1:0] cfg_zero_out, // output zero point z (model.txt zero_out=)
    input  wire                       in_valid,
    input  wire signed [ACC_BITS-1:0] in_acc,     // accumulator: sum(w*x) + bias
    input  wire signed [7:0]          in_shift,   // requantizing shift of this output channel
    output reg                        out_valid,
    output reg  signed [OUT_BITS-1:0] out_q       // requantized, activated, saturated
);
    // ---- widths -------------------------------------------------------------------------
    localparam XW = ACC_BITS + 12;                  // |acc * 3277| < 2^(ACC_BITS + 11)
    localparam CW = (XW > OUT_BITS + 2) ? XW : OUT_BITS + 2;   // clamp comparison width
    localparam LW = 2 * OUT_BITS + 3;               // left-shift result: (OUT_BITS+2) << (OUT_BITS+1)
    localparam PW = (XW + 1 > LW) ? XW + 1 : LW;    // pre-saturation width
    localparam SRW = 6;                             // right-shift amount bits: XW - 1 <= 59
    localparam SLW = 5;                             // left-shift amount bits: OUT_BITS + 1 <= 17

    // ---- activation on the wide accumulator ---------------------------------------------
    wire acc_neg   = in_acc[ACC_BITS-1];
    wire leaky_neg = (cfg_act == 2'd1) & acc_neg;
    wire relu_neg  = (cfg_act == 2'd2) & acc_neg;

    wire signed [XW-1:0] a  = in_acc;               // sign-extended to XW
    // acc * 3277 with four adders: 3277 = 3 * (1024 + 64 + 4) + 1
    wire signed [XW-1:0] a3 = (a <<< 1) + a;
    wire signed [XW-1:0] am = (a3 <<< 10) + (a3 <<< 6) + (a3 <<< 2) + a;

    wire signed [XW-1:0] x  = relu_neg ? {XW{1'b0}} : (leaky_neg ? am : a);

    // effective shift s = in_shift (+ 15 for a negative leaky input), range [-128, 142]
    wire signed [8:0] s_eff = {in_shift[7], in_shift} + (leaky_neg ? 9'd15 : 9'd0);
    wire s_pos = ~s_eff[8] & (|s_eff[7:0]);         // s > 0: rounding right shift

    // ---- s > 0: R(x / 2^s) = (floor(x / 2^(s-1)) + rnd) >>> 1 ----------------------------
    // floor(x/2^(s-1)) has bit 0 = the half bit; adding it before the last 1-bit shift gives
    // floor((x + 2^(s-1)) / 2^s).  For s > XW the result equals the one for s = XW.
    wire [8:0]           sm1 = s_eff - 9'd1;                      // s - 1 (used when s > 0)
    wire [SRW-1:0]       sr  = (sm1 > XW - 1) ? XW - 1 : sm1[SRW-1:0];
    wire signed [XW-1:0] t   = x >>> sr;
    wire signed [XW:0]   te  = t;
    wire                 rnd = ~cfg_rnd;                           // half_up adds the half bit
    wire signed [XW:0]   u   = te + {{XW{1'b0}}, rnd};
    wire signed [XW:0]   yr  = u >>> 1;

    // ---- s <= 0: clamp x to +-2^OUT_BITS, then multiply by 2^-s --------------------------
    wire signed [CW-1:0]       xc     = x;
    wire signed [CW-1:0]       lim_hi = {{(CW-OUT_BITS-1){1'b0}}, 1'b1, {OUT_BITS{1'b0}}};
    wire signed [CW-1:0]       lim_lo = -lim_hi;
    wire signed [CW-1:0]       xcl    = (xc > lim_hi) ? lim_hi : ((xc < lim_lo) ? lim_lo : xc);
    wire signed [OUT_BITS+1:0] xn     = xcl[OUT_BITS+1:0];
    wire [8:0]                 nl     = -s_eff;                   // -s (used when s <= 0)
    wire [SLW-1:0]             sl     = (nl > OUT_BITS + 1) ? OUT_BITS + 1 : nl[SLW-1:0];
    wire signed [LW-1:0]       xl     = xn;
    wire signed [LW-1:0]       yl     = xl <<< sl;

    // ---- output zero point, then saturate -----------------------------------------------------
    // sat(R(..) + z) (docs/fixed-point.md 1.1: z is added after the activation and the rounding
    // shift, before the saturation; csrc/mdfi_fixedpoint.h mdfi_requantize_zp).  The wide value is
    // first clamped to OUT_BITS+1 bits: since |z| <= 2^(OUT_BITS-1), any value beyond that range
    // saturates with or without z, so the add and the final clamp are only OUT_BITS+2 bits wide
    // and the result is exact.
    wire signed [PW-1:0] yr_w = yr;
    wire signed [PW-1:0] yl_w = yl;
    wire signed [PW-1:0] y    = s_pos ? yr_w : yl_w;
    // y fits in OUT_BITS+1 bits iff bits PW-1 .. OUT_BITS are all equal (a sign extension)
    wire hi_ones  =  &y[PW-1:OUT_BITS];
    wire hi_zeros = ~|y[PW-1:OUT_BITS];
    wire signed [OUT_BITS:0]   yc = (hi_ones | hi_zeros) ? y[OUT_BITS:0]
                                  : (y[PW-1] ? {1'b1, {OUT_BITS{1'b0}}} : {1'b0, {OUT_BITS{1'b1}}});
    wire signed [OUT_BITS+1:0] yz = yc + cfg_zero_out;     // both sign-extended: cannot wrap
    // fits in OUT_BITS iff bits OUT_BITS+1 .. OUT_BITS-1 are all equal
    wire z_ones  =  &yz[OUT_BITS+1:OUT_BITS-1];
    wire z_zeros = ~|yz[OUT_BITS+1:OUT_BITS-1];
    wire [OUT_BITS-1:0] q_max = {1'b0, {(OUT_BITS-1){1'b1}}};
    wire [OUT_BITS-1:0] q_min = {1'b1, {(OUT_BITS-1){1'b0}}};
    wire [OUT_BITS-1:0] q     = (z_ones | z_zeros) ? yz[OUT_BITS-1:0]
                                                   : (yz[OUT_BITS+1] ? q_min : q_max);

    // ---- one register stage ----------------------------------------------------------------
    always @(posedge clk) begin
        if (!rst_n) begin
            out_valid <= 1'b0;
        end else begin
            out_valid <= in_valid;
        end
        if (in_valid) out_q <= q;
    end
endmodule
