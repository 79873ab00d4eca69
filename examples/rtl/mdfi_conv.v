// mdfi_conv.v -- a convolution engine for MDFI's integer datapath (synthesizable Verilog-2005).
//
// Output-stationary: a TM x TP array of multiply-accumulate units computes TM output channels
// of TP neighbouring output pixels (TP consecutive x of one output row) at a time -- a *tile*.
// Each unit keeps its accumulator in place while the reduction streams past, one tap per clock:
//
//   acc[i][j] = bias[m0 + i] + sum over (c, ky, kx) of w[m0 + i][c][ky][kx] * x[c][iy][ix_j]
//   iy = oy*stride + ky - pad,  ix_j = (ox0 + j)*stride + kx - pad,
//   x = cfg_pad_value outside the image (the input's zero point: the code of the real value 0)
//
// (docs/fixed-point.md sections 3.1 and 1.1; docs/golden-format.md "Zero points": model.txt
// pad_value= is the padded taps' code, and the exported bias already holds the folded
// -pad_value*sum(w) term, so the engine sums the stored codes exactly as without a zero point;
// the output zero point cfg_zero_out (model.txt zero_out=) goes to mdfi_requant, which adds it
// after the rounding shift and before the saturation.  Both are 0 for a zero-free layer. the reduction order is Darknet's, c then ky then kx, which
// for exact integer sums does not matter).  Per clock, one weight word (TM weights of the same
// tap) is broadcast along the pixels and TP activations along the channels.  When a tile's last
// tap is summed, its TM*TP accumulators are copied to a drain buffer, and the next tile starts
// at once; the drain feeds them one per clock through mdfi_requant (requantize + leaky +
// saturate, the existing module) to the output port, overlapped with the next tile's
// reduction.  Tiles run row by row (cfg_oy_first + r*cfg_oy_step, r < cfg_oy_count), then
// x tiles, then channel tiles, so a subset of output rows can be computed for every channel.
//
// Memories are outside (a test bench, or SRAMs), all with a read latency of one clock:
//   activations  [C][H][W], ABITS each, TP read ports (lane j reads x[c][iy][ix_j])
//   weights      one word of TM weights per address: word (mt*C*K*K + (c*K + ky)*K + kx),
//                lane i = w[mt*TM + i][c][ky][kx] (0 beyond M)
//   bias/shift   one word per channel tile mt: TM biases (ACC_BITS each), TM shifts (8 bits)
// Results leave on out_valid/out_addr/out_data, out_addr = (m*OH + oy)*OW + ox (CHW order):
// the golden lNNN.out at that flat index.
//
// The host supplies a layer descriptor (cfg_*), including a few products of layer sizes, so
// the engine itself has no multiplier besides the TM*TP MAC units (the descriptor is static
// while busy).  Widths: ACC_BITS is the declared accumulator width of the layer (acc_bits in
// the golden manifest, <= 48); ACC_REG_BITS the width of the accumulator registers, equal to
// ACC_BITS in a correct design (a narrower one wraps around: mdfi_conv_narrow.v).
//
// Synthesizable Verilog-2005: no initial blocks, no real types, no system functions; loops
// only in generate blocks.

`timescale 1ns/1ps

module mdfi_conv #(
    parameter TM = 8,                 // output channels per tile (PE rows)
    parameter TP = 8,                 // output pixels per tile (PE columns)
    parameter WBITS = 8,              // weight width (signed)
    parameter ABITS = 8,              // activation width as stored (signed, or unsigned pixels)
    parameter ACC_BITS = 29,          // declared accumulator width, 2..48 (mdfi_requant's input)
    parameter ACC_REG_BITS = ACC_BITS,// accumulator register width (< ACC_BITS wraps: a fault)
    parameter OUT_BITS = 8,           // output width, 2..16
    parameter AW = 24,                // address width (every address and address product)
    parameter DW = 16                 // width of sizes and counters
) (
    input  wire                    clk,
    input  wire                    rst_n,          // synchronous, active low
    // ---- layer descriptor (static while busy) ---------------------------------------------
    input  wire [DW-1:0]           cfg_c,          // input channels C
    input  wire [DW-1:0]           cfg_h,          // input height H
    input  wire [DW-1:0]           cfg_w,          // input width W
    input  wire [AW-1:0]           cfg_hw,         // H*W
    input  wire [DW-1:0]           cfg_m,          // output channels M
    input  wire [3:0]              cfg_k,          // kernel size K (1..15)
    input  wire [3:0]              cfg_stride,     // stride (1..15)
    input  wire [3:0]              cfg_pad,        // padding per side (taps holding cfg_pad_value)
    input  wire [ABITS-1:0]        cfg_pad_value,  // code of a padded tap: the input zero point
                                                   // (model.txt pad_value=, as stored: ABITS bits,
                                                   // signed or unsigned like the activations)
    input  wire [DW-1:0]           cfg_ow,         // output width OW
    input  wire [AW-1:0]           cfg_ohw,        // OH*OW
    input  wire [AW-1:0]           cfg_ckk,        // C*K*K (weight words per channel tile)
    input  wire [DW-1:0]           cfg_oy_first,   // first output row
    input  wire [DW-1:0]           cfg_oy_step,    // distance between computed rows
    input  wire [DW-1:0]           cfg_oy_count,   // number of computed rows (>= 1)
    input  wire signed [DW:0]      cfg_iy_first,   // oy_first*stride - pad
    input  wire [DW-1:0]           cfg_iy_step,    // oy_step*stride
    input  wire signed [AW:0]      cfg_iyw_first,  // (oy_first*stride - pad)*W
    input  wire [AW-1:0]           cfg_iyw_step,   // oy_step*stride*W
    input  wire [AW-1:0]           cfg_oyw_first,  // oy_first*OW
    input  wire [AW-1:0]           cfg_oyw_step,   // oy_step*OW
    input  wire [1:0]              cfg_act,        // 0 linear, 1 leaky, 2 relu
    input  wire                    cfg_rnd,        // 0 half_up, 1 truncate
    input  wire                    cfg_in_unsigned,// 1: activations are unsigned (8-bit pixels)
    input  wire signed [OUT_BITS-1:0] cfg_zero_out,// output zero point (model.txt zero_out=)
    // ---- control -----------------------------------------------------------------------------
    input  wire                    start,          // pulse while idle: run the descriptor
    output wire                    busy,
    output reg                     done,           // one-clock pulse after the last output
    // ---- memories (read latency 1) -----------------------------------------------------------
    output wire [TP*AW-1:0]        act_addr,       // lane j at [j*AW +: AW]
    input  wire [TP*ABITS-1:0]     act_rdata,
    output wire [AW-1:0]           w_addr,
    input  wire [TM*WBITS-1:0]     w_rdata,        // lane i at [i*WBITS +: WBITS]
    output wire [AW-1:0]           bs_addr,        // channel tile index mt
    input  wire [TM*ACC_BITS-1:0]  bias_rdata,
    input  wire [TM*8-1:0]         shift_rdata,
    // ---- results -----------------------------------------------------------------------------
    output wire                    out_valid,
    output reg  [AW-1:0]           out_addr,
    output wire [OUT_BITS-1:0]     out_data
);
    localparam PW = WBITS + ABITS + 1;             // product width (activations extended by 1 bit)
    localparam NPE = TM * TP;
    localparam DRW = 16;                           // drain counter width (NPE < 2^16)

    // =========================================================================================
    // Issue stage: loop counters, addresses, per-lane padding
    // =========================================================================================
    localparam S_IDLE = 2'd0, S_RUN = 2'd1, S_FLUSH = 2'd2;
    reg  [1:0]          state;
    reg  [DW-1:0]       row;                       // computed rows so far
    reg  signed [DW:0]  iy0;                       // oy*stride - pad of the current row
    reg  signed [AW:0]  iyw0;                      // iy0*W
    reg  [AW-1:0]       oyw;                       // oy*OW
    reg  [DW-1:0]       ox0;                       // first output x of the tile
    reg  signed [DW:0]  ix0;                       // ox0*stride - pad
    reg  [DW-1:0]       m0;                        // first output channel of the tile
    reg  [AW-1:0]       mt;                        // channel tile index
    reg  [AW-1:0]       wbase;                     // mt * C*K*K
    reg  [AW-1:0]       obase;                     // m0 * OH*OW
    reg  [DW-1:0]       c;
    reg  [3:0]          ky, kx;
    reg  [AW-1:0]       cbase;                     // c * H*W
    reg  signed [AW:0]  kyw;                       // (iy0 + ky)*W
    reg  [AW-1:0]       woff;                      // (c*K + ky)*K + kx

    wire last_kx  = (kx == cfg_k - 4'd1);
    wire last_ky  = (ky == cfg_k - 4'd1);
    wire last_c   = (c == cfg_c - 1'b1);
    wire last_tap = last_kx & last_ky & last_c;
    wire first_tap = (kx == 4'd0) & (ky == 4'd0) & (c == {DW{1'b0}});
    wire last_mt  = (m0 + TM >= cfg_m);
    wire last_ox  = (ox0 + TP >= cfg_ow);
    wire last_row = (row == cfg_oy_count - 1'b1);

    // issue a tap unless the drain buffer cannot take the tile this tap completes
    wire cap_pending;                              // a last tap is in the MAC stage
    wire drain_busy;
    reg  rq_busy;                                  // a value is in mdfi_requant
    wire stall = last_tap & (drain_busy | cap_pending);
    wire issue = (state == S_RUN) & ~stall;

    wire signed [DW:0] iy = iy0 + $signed({1'b0, ky});
    wire row_ok = (iy >= 0) & (iy < $signed({1'b0, cfg_h}));

    genvar gi, gj;
    wire [TP-1:0] lane_ok_w;                       // this lane's tap is inside the image
    generate
        for (gj = 0; gj < TP; gj = gj + 1) begin : g_addr
            // ix = ix0 + j*stride + kx; j*stride for a constant j is a few adders
            wire signed [DW+4:0] jx = gj * $signed({1'b0, cfg_stride});
            wire signed [DW+4:0] ix = ix0 + jx + $signed({1'b0, kx});
            wire in_x = (ix >= 0) & (ix < $signed({1'b0, cfg_w}));
            wire in_tile = (ox0 + gj < cfg_ow);
            assign lane_ok_w[gj] = row_ok & in_x & in_tile;
            wire signed [AW+1:0] a = $signed({1'b0, cbase}) + kyw + ix;
            // an address outside the image is never used: read word 0 instead
            assign act_addr[gj*AW +: AW] = lane_ok_w[gj] ? a[AW-1:0] : {AW{1'b0}};
        end
    endgenerate
    assign w_addr  = wbase + woff;
    assign bs_addr = mt;
    assign busy    = (state != S_IDLE);

    always @(posedge clk) begin
        if (!rst_n) begin
            state <= S_IDLE;
        end else begin
            case (state)
            S_IDLE: if (start) begin
                state <= S_RUN;
                row <= 0; iy0 <= cfg_iy_first; iyw0 <= cfg_iyw_first; oyw <= cfg_oyw_first;
                ox0 <= 0; ix0 <= -$signed({1'b0, cfg_pad});
                m0 <= 0; mt <= 0; wbase <= 0; obase <= 0;
                c <= 0; ky <= 0; kx <= 0; cbase <= 0; kyw <= cfg_iyw_first; woff <= 0;
            end
            S_RUN: if (issue) begin
                woff <= woff + 1'b1;
                if (!last_kx) begin
                    kx <= kx + 4'd1;
                end else begin
                    kx <= 4'd0;
                    if (!last_ky) begin
                        ky <= ky + 4'd1;
                        kyw <= kyw + $signed({1'b0, cfg_w});
                    end else begin
                        ky <= 4'd0;
                        kyw <= iyw0;
                        if (!last_c) begin
                            c <= c + 1'b1;
                            cbase <= cbase + cfg_hw;
                        end else begin
                            // tile done: next channel tile, x tile, row
                            c <= 0; cbase <= 0; woff <= 0;
                            if (!last_mt) begin
                                m0 <= m0 + TM; mt <= mt + 1'b1;
                                wbase <= wbase + cfg_ckk; obase <= obase + TM * cfg_ohw;
                            end else begin
                                m0 <= 0; mt <= 0; wbase <= 0; obase <= 0;
                                if (!last_ox) begin
                                    ox0 <= ox0 + TP;
                                    ix0 <= ix0 + TP * $signed({1'b0, cfg_stride});
                                end else begin
                                    ox0 <= 0; ix0 <= -$signed({1'b0, cfg_pad});
                                    if (!last_row) begin
                                        row <= row + 1'b1;
                                        iy0 <= iy0 + $signed({1'b0, cfg_iy_step});
                                        iyw0 <= iyw0 + $signed({1'b0, cfg_iyw_step});
                                        kyw <= iyw0 + $signed({1'b0, cfg_iyw_step});
                                        oyw <= oyw + cfg_oyw_step;
                                    end else begin
                                        state <= S_FLUSH;
                                    end
                                end
                            end
                        end
                    end
                end
            end
            S_FLUSH: if (!cap_pending && !drain_busy && !rq_busy) state <= S_IDLE;
            default: state <= S_IDLE;
            endcase
        end
    end

    // =========================================================================================
    // MAC stage (the memories answer one clock after the issue)
    // =========================================================================================
    reg              s1_valid, s1_first, s1_last;
    reg  [TP-1:0]    s1_lane_ok;
    reg  [DW-1:0]    s1_m0;
    reg  [AW-1:0]    s1_obase;
    reg  [AW-1:0]    s1_opos;                      // oy*OW + ox0
    reg  [DW-1:0]    s1_ox0;
    always @(posedge clk) begin
        if (!rst_n) begin
            s1_valid <= 1'b0;
        end else begin
            s1_valid <= issue;
        end
        if (issue) begin
            s1_first <= first_tap; s1_last <= last_tap; s1_lane_ok <= lane_ok_w;
            s1_m0 <= m0; s1_obase <= obase; s1_opos <= oyw + ox0; s1_ox0 <= ox0;
        end
    end
    assign cap_pending = s1_valid & s1_last;

    // drain buffer: the finished tile, one register per PE, read through a multiplexer
    wire [NPE*ACC_REG_BITS-1:0]    dflat;
    reg  [8*TM-1:0]                dshift;
    reg  [TP-1:0]                  dlane;
    reg  [TM-1:0]                  dchan;
    reg  [AW-1:0]                  dbase;          // m0*OH*OW + oy*OW + ox0

    generate
        for (gi = 0; gi < TM; gi = gi + 1) begin : g_row
            wire signed [WBITS-1:0]    wv = w_rdata[gi*WBITS +: WBITS];
            wire signed [ACC_BITS-1:0] bv = bias_rdata[gi*ACC_BITS +: ACC_BITS];
            for (gj = 0; gj < TP; gj = gj + 1) begin : g_pe
                wire [ABITS-1:0] raw = act_rdata[gj*ABITS +: ABITS];
                // a padded tap holds the input zero point (docs/golden-format.md "Zero points")
                wire [ABITS-1:0] xq  = s1_lane_ok[gj] ? raw : cfg_pad_value;
                // activation extended by one bit: zero (pixels) or sign (signed tensors)
                wire signed [ABITS:0] av = {cfg_in_unsigned ? 1'b0 : xq[ABITS-1], xq};
                wire signed [PW-1:0] prod = wv * av;
                reg  signed [ACC_REG_BITS-1:0] acc;
                // first tap: start from the bias; the sum wraps at ACC_REG_BITS (two's complement)
                wire signed [ACC_REG_BITS-1:0] base = s1_first ? bv[ACC_REG_BITS-1:0] : acc;
                wire signed [ACC_REG_BITS-1:0] sum  = base + prod;
                reg  signed [ACC_REG_BITS-1:0] dreg;
                always @(posedge clk) begin
                    if (s1_valid) acc <= sum;
                    if (s1_valid && s1_last) dreg <= sum;
                end
                assign dflat[(gi*TP + gj)*ACC_REG_BITS +: ACC_REG_BITS] = dreg;
            end
        end
    endgenerate

    // =========================================================================================
    // Drain: one value per clock through mdfi_requant
    // =========================================================================================
    reg  [DRW-1:0] didx;                           // i*TP + j of the value to feed
    reg  [DRW-1:0] di, dj;                         // its channel i and pixel j in the tile
    reg            dactive;
    reg  [AW-1:0]  daddr;                          // flat output index of (i, j)
    reg  [AW-1:0]  drow;                           // flat output index of (i, 0)
    assign drain_busy = dactive;
    wire feed_ok = dactive & dlane[dj] & dchan[di];

    always @(posedge clk) begin
        if (!rst_n) begin
            dactive <= 1'b0;
        end else if (cap_pending) begin
            // the MAC stage writes the drain registers now; drain them from the next clock on
            dactive <= 1'b1;
            didx <= 0; di <= 0; dj <= 0;
            daddr <= s1_obase + s1_opos;
            drow  <= s1_obase + s1_opos;
            dshift <= shift_rdata;
        end else if (dactive) begin
            if (didx == NPE - 1) begin
                dactive <= 1'b0;
            end else begin
                didx <= didx + 1'b1;
                if (dj == TP - 1) begin
                    dj <= 0;
                    di <= di + 1'b1;
                    drow  <= drow + cfg_ohw;
                    daddr <= drow + cfg_ohw;
                end else begin
                    dj <= dj + 1'b1;
                    daddr <= daddr + 1'b1;
                end
            end
        end
    end
    // lane and channel validity of the captured tile
    generate
        for (gj = 0; gj < TP; gj = gj + 1) begin : g_dlane
            always @(posedge clk) if (cap_pending) dlane[gj] <= (s1_ox0 + gj < cfg_ow);
        end
        for (gi = 0; gi < TM; gi = gi + 1) begin : g_dchan
            always @(posedge clk) if (cap_pending) dchan[gi] <= (s1_m0 + gi < cfg_m);
        end
    endgenerate

    // one register stage between the drain multiplexer and the requantizer (timing)
    wire signed [ACC_REG_BITS-1:0] dval = dflat[didx*ACC_REG_BITS +: ACC_REG_BITS];
    reg                            f_valid;
    reg  signed [ACC_BITS-1:0]     f_acc;                  // sign-extended (a narrow register's wrap shows)
    reg  [7:0]                     f_shift;
    reg  [AW-1:0]                  f_addr;
    always @(posedge clk) begin
        if (!rst_n) f_valid <= 1'b0;
        else        f_valid <= feed_ok;
        if (feed_ok) begin
            f_acc <= dval;
            f_shift <= dshift[di*8 +: 8];
            f_addr <= daddr;
        end
        if (!rst_n) rq_busy <= 1'b0;
        else        rq_busy <= feed_ok | f_valid;
        if (f_valid) out_addr <= f_addr;
    end

    mdfi_requant #(.ACC_BITS(ACC_BITS), .OUT_BITS(OUT_BITS)) u_requant (
        .clk(clk), .rst_n(rst_n), .cfg_act(cfg_act), .cfg_rnd(cfg_rnd), .cfg_zero_out(cfg_zero_out),
        .in_valid(f_valid), .in_acc(f_acc), .in_shift(f_shift),
        .out_valid(out_valid), .out_q(out_data)
    );

    always @(posedge clk) begin
        if (!rst_n) done <= 1'b0;
        else        done <= (state == S_FLUSH) & ~cap_pending & ~drain_busy & ~rq_busy;
    end
endmodule
