// tb_conv.v -- runs one convolution layer of an MDFI golden export through mdfi_conv.
//
// Reads (with $readmemh, the golden .hex format of docs/golden-format.md):
//   +in=FILE       lNNN.in0.hex      C*H*W input activations, CHW
//   +weights=FILE  lNNN.weights.hex  M*C*K*K weights, [m][c][ky][kx]
//   +bias=FILE     lNNN.bias.hex     M biases, ACC_BITS two's complement
//   +shift=FILE    lNNN.shift.hex    M shifts, 8-bit two's complement
// Writes:
//   +out=FILE      lNNN.out.hex      the outputs the engine produced, as a *sparse dump*:
//                                    "@addr" (flat CHW index, hex) before every run of
//                                    consecutive addresses, then one canonical value per line
//                                    (OUT_BITS two's complement): what mdfi verify compares
// Layer options: +stride=N +pad=N (per side) +act=linear|leaky|relu +rounding=half_up|truncate
//   +in_unsigned=0|1 (1 for the 8-bit pixel input of the first layer)
//   +pad_value=N +zero_out=N  the input and output zero points (model.txt pad_value=, zero_out=;
//   decimal, default 0; docs/golden-format.md "Zero points"): padded taps hold N, the output adds N
// Rows to compute: +oy_first=N +oy_step=N +oy_count=N (default: every output row)
//
// Compile-time parameters (they size the memories): C, H, W, M, K, ACC_BITS, OUT_BITS, TM, TP,
// and with -DNARROW=B the faulty engine mdfi_conv_narrow (accumulator registers of B bits).
//
// Prints "tb_conv: DONE ..." with the number of outputs and clock cycles; "tb_conv: ERROR ..."
// and exit code 1 (under Icarus) on a short input file, a missing or duplicated output, x/z.

`timescale 1ns/1ps
`ifdef __ICARUS__
`define TB_FAIL $finish_and_return(1)
`else
`define TB_FAIL $finish
`endif

module tb_conv;
    parameter C = 16, H = 16, W = 16, M = 16, K = 3;
    parameter ACC_BITS = 29, OUT_BITS = 8;
    parameter TM = 8, TP = 8;
    localparam WBITS = 8, ABITS = 8, AW = 24, DW = 16;
    localparam NIN = C * H * W, NW = M * C * K * K, CKK = C * K * K;
    localparam MT = (M + TM - 1) / TM;
    localparam [AW-1:0] HW_A = H * W, CKK_A = CKK;       // descriptor constants at the port width

    // ---- memories --------------------------------------------------------------------------
    reg  [ABITS-1:0]       act_mem   [0:NIN-1];
    reg  [WBITS-1:0]       w_mem     [0:NW-1];
    reg  [ACC_BITS-1:0]    bias_mem  [0:M-1];
    reg  [7:0]             shift_mem [0:M-1];
    reg  [TM*WBITS-1:0]    w_word    [0:MT*CKK-1];
    reg  [TM*ACC_BITS-1:0] bias_word [0:MT-1];
    reg  [TM*8-1:0]        shift_word[0:MT-1];

    reg  [8*1024-1:0] in_file, w_file, b_file, s_file, out_file;
    reg  [8*16-1:0]   act_name, rnd_name;
    integer stride, pad, in_unsigned, oy_first, oy_step, oy_count, oh, ow, pad_value, zero_out;

    reg clk = 1'b0, rst_n = 1'b0, start = 1'b0;
    always #5 clk = ~clk;

    // descriptor
    reg [DW-1:0] cfg_oy_first, cfg_oy_step, cfg_oy_count, cfg_ow, cfg_iy_step;
    reg signed [DW:0] cfg_iy_first;
    reg signed [AW:0] cfg_iyw_first;
    reg [AW-1:0] cfg_ohw, cfg_iyw_step, cfg_oyw_first, cfg_oyw_step;
    reg [3:0] cfg_stride, cfg_pad;
    reg [ABITS-1:0] cfg_pad_value;
    reg signed [OUT_BITS-1:0] cfg_zero_out;
    reg [1:0] cfg_act;
    reg cfg_rnd, cfg_in_unsigned;

    wire [TP*AW-1:0]       act_addr;
    reg  [TP*ABITS-1:0]    act_rdata;
    wire [AW-1:0]          w_addr, bs_addr;
    reg  [TM*WBITS-1:0]    w_rdata;
    reg  [TM*ACC_BITS-1:0] bias_rdata;
    reg  [TM*8-1:0]        shift_rdata;
    wire busy, done, out_valid;
    wire [AW-1:0] out_addr;
    wire [OUT_BITS-1:0] out_data;

`ifdef NARROW
    mdfi_conv_narrow #(.TM(TM), .TP(TP), .ACC_BITS(ACC_BITS), .NARROW_BITS(`NARROW), .OUT_BITS(OUT_BITS),
                       .AW(AW), .DW(DW)) dut (
`else
    mdfi_conv #(.TM(TM), .TP(TP), .ACC_BITS(ACC_BITS), .OUT_BITS(OUT_BITS), .AW(AW), .DW(DW)) dut (
`endif
        .clk(clk), .rst_n(rst_n),
        .cfg_c(C[DW-1:0]), .cfg_h(H[DW-1:0]), .cfg_w(W[DW-1:0]), .cfg_hw(HW_A), .cfg_m(M[DW-1:0]),
        .cfg_k(K[3:0]), .cfg_stride(cfg_stride), .cfg_pad(cfg_pad), .cfg_pad_value(cfg_pad_value),
        .cfg_ow(cfg_ow), .cfg_ohw(cfg_ohw),
        .cfg_ckk(CKK_A), .cfg_oy_first(cfg_oy_first), .cfg_oy_step(cfg_oy_step), .cfg_oy_count(cfg_oy_count),
        .cfg_iy_first(cfg_iy_first), .cfg_iy_step(cfg_iy_step), .cfg_iyw_first(cfg_iyw_first),
        .cfg_iyw_step(cfg_iyw_step), .cfg_oyw_first(cfg_oyw_first), .cfg_oyw_step(cfg_oyw_step),
        .cfg_act(cfg_act), .cfg_rnd(cfg_rnd), .cfg_in_unsigned(cfg_in_unsigned),
        .cfg_zero_out(cfg_zero_out), .start(start), .busy(busy), .done(done),
        .act_addr(act_addr), .act_rdata(act_rdata), .w_addr(w_addr), .w_rdata(w_rdata),
        .bs_addr(bs_addr), .bias_rdata(bias_rdata), .shift_rdata(shift_rdata),
        .out_valid(out_valid), .out_addr(out_addr), .out_data(out_data));

    // ---- memory read ports: one clock of latency -----------------------------------------------
    integer j;
    always @(posedge clk) begin
        for (j = 0; j < TP; j = j + 1)
            act_rdata[j*ABITS +: ABITS] <= act_mem[act_addr[j*AW +: AW]];
        w_rdata     <= w_word[w_addr];
        bias_rdata  <= bias_word[bs_addr];
        shift_rdata <= shift_word[bs_addr];
    end

    // ---- outputs: a sparse dump in the order they come, each address once ------------------
    integer fd, n_out = 0, n_bad = 0, last_addr = -2;
    reg [0:0] seen [0:M*(H+2*K)*(W+2*K)-1];      // >= M*OH*OW for any stride >= 1 and pad <= K
    always @(posedge clk) begin
        if (rst_n && out_valid) begin
            if (^out_data === 1'bx || ^out_addr === 1'bx) n_bad = n_bad + 1;
            else begin
                if (seen[out_addr] === 1'b1) begin
                    $display("tb_conv: ERROR: output address %0d produced twice", out_addr);
                    `TB_FAIL;
                end
                seen[out_addr] = 1'b1;
                if (out_addr != last_addr + 1) $fwrite(fd, "@%0h\n", out_addr);
                $fwrite(fd, "%h\n", out_data);
                last_addr = out_addr;
            end
            n_out = n_out + 1;
        end
    end

    integer i, m, r, cycles, expect;
    initial begin
        if (!$value$plusargs("in=%s", in_file) || !$value$plusargs("weights=%s", w_file) ||
            !$value$plusargs("bias=%s", b_file) || !$value$plusargs("shift=%s", s_file) ||
            !$value$plusargs("out=%s", out_file)) begin
            $display("tb_conv: ERROR: need +in= +weights= +bias= +shift= +out=");
            `TB_FAIL;
        end
        if (!$value$plusargs("stride=%d", stride)) stride = 1;
        if (!$value$plusargs("pad=%d", pad)) pad = (K - 1) / 2;
        if (!$value$plusargs("in_unsigned=%d", in_unsigned)) in_unsigned = 0;
        if (!$value$plusargs("act=%s", act_name)) act_name = "linear";
        if (!$value$plusargs("rounding=%s", rnd_name)) rnd_name = "half_up";
        if (!$value$plusargs("pad_value=%d", pad_value)) pad_value = 0;
        if (!$value$plusargs("zero_out=%d", zero_out)) zero_out = 0;
        // zero points are codes of their formats (docs/fixed-point.md 1.1)
        if (in_unsigned ? (pad_value < 0 || pad_value >= (1 << ABITS))
                        : (pad_value < -(1 << (ABITS - 1)) || pad_value >= (1 << (ABITS - 1)))) begin
            $display("tb_conv: ERROR: +pad_value=%0d is not a code of the input format", pad_value); `TB_FAIL;
        end
        if (zero_out < -(1 << (OUT_BITS - 1)) || zero_out >= (1 << (OUT_BITS - 1))) begin
            $display("tb_conv: ERROR: +zero_out=%0d outside the %0d-bit output range", zero_out, OUT_BITS); `TB_FAIL;
        end
        oh = (H + 2 * pad - K) / stride + 1;
        ow = (W + 2 * pad - K) / stride + 1;
        if (!$value$plusargs("oy_first=%d", oy_first)) oy_first = 0;
        if (!$value$plusargs("oy_step=%d", oy_step)) oy_step = 1;
        if (!$value$plusargs("oy_count=%d", oy_count)) oy_count = oh;
        if (oy_count < 1 || oy_first + (oy_count - 1) * oy_step >= oh) begin
            $display("tb_conv: ERROR: rows %0d + k*%0d, k < %0d, outside 0..%0d", oy_first, oy_step, oy_count, oh - 1);
            `TB_FAIL;
        end
        if (act_name == "linear") cfg_act = 2'd0;
        else if (act_name == "leaky") cfg_act = 2'd1;
        else if (act_name == "relu") cfg_act = 2'd2;
        else begin $display("tb_conv: ERROR: unknown +act=%0s", act_name); `TB_FAIL; end
        if (rnd_name == "half_up") cfg_rnd = 1'b0;
        else if (rnd_name == "truncate") cfg_rnd = 1'b1;
        else begin $display("tb_conv: ERROR: unknown +rounding=%0s", rnd_name); `TB_FAIL; end

        // $readmemh leaves missing words at x: check, so a short file is an error
        $readmemh(in_file, act_mem);
        $readmemh(w_file, w_mem);
        $readmemh(b_file, bias_mem);
        $readmemh(s_file, shift_mem);
        for (i = 0; i < NIN; i = i + 1)
            if (^act_mem[i] === 1'bx) begin $display("tb_conv: ERROR: %0s: word %0d missing", in_file, i); `TB_FAIL; end
        for (i = 0; i < NW; i = i + 1)
            if (^w_mem[i] === 1'bx) begin $display("tb_conv: ERROR: %0s: word %0d missing", w_file, i); `TB_FAIL; end
        for (i = 0; i < M; i = i + 1)
            if (^bias_mem[i] === 1'bx || ^shift_mem[i] === 1'bx) begin
                $display("tb_conv: ERROR: %0s or %0s: word %0d missing", b_file, s_file, i); `TB_FAIL;
            end
        // pack TM weights of one tap per word; biases and shifts per channel tile (0 beyond M)
        for (i = 0; i < MT * CKK; i = i + 1) begin
            for (m = 0; m < TM; m = m + 1)
                w_word[i][m*WBITS +: WBITS] = ((i / CKK) * TM + m < M) ? w_mem[((i / CKK) * TM + m) * CKK + i % CKK] : 0;
        end
        for (i = 0; i < MT; i = i + 1)
            for (m = 0; m < TM; m = m + 1) begin
                bias_word[i][m*ACC_BITS +: ACC_BITS] = (i * TM + m < M) ? bias_mem[i * TM + m] : 0;
                shift_word[i][m*8 +: 8]              = (i * TM + m < M) ? shift_mem[i * TM + m] : 0;
            end

        // the layer descriptor (what a host driver computes)
        cfg_stride = stride; cfg_pad = pad; cfg_in_unsigned = in_unsigned;
        cfg_pad_value = pad_value; cfg_zero_out = zero_out;          // two's complement / unsigned code
        cfg_ow = ow; cfg_ohw = oh * ow;
        cfg_oy_first = oy_first; cfg_oy_step = oy_step; cfg_oy_count = oy_count;
        cfg_iy_first = oy_first * stride - pad; cfg_iy_step = oy_step * stride;
        cfg_iyw_first = (oy_first * stride - pad) * W; cfg_iyw_step = oy_step * stride * W;
        cfg_oyw_first = oy_first * ow; cfg_oyw_step = oy_step * ow;

        fd = $fopen(out_file, "w");
        if (fd == 0) begin $display("tb_conv: ERROR: cannot write %0s", out_file); `TB_FAIL; end
        repeat (3) @(posedge clk);
        #1 rst_n = 1'b1;
        @(posedge clk);
        #1 start = 1'b1;
        @(posedge clk);
        #1 start = 1'b0;
        cycles = 0;
        while (!done && cycles < 200000000) begin
            @(posedge clk);
            cycles = cycles + 1;
        end
        repeat (2) @(posedge clk);
        $fclose(fd);
        expect = oy_count * ow * M;
        if (!done && cycles >= 200000000) begin $display("tb_conv: ERROR: no done after %0d cycles", cycles); `TB_FAIL; end
        if (n_bad != 0) begin $display("tb_conv: ERROR: %0d outputs contain x/z", n_bad); `TB_FAIL; end
        if (n_out != expect) begin
            $display("tb_conv: ERROR: %0d outputs, expected %0d (%0d rows x %0d x %0d channels)", n_out, expect,
                     oy_count, ow, M);
            `TB_FAIL;
        end
        $display("tb_conv: DONE %0d outputs (%0d rows of %0dx%0d, %0d channels; C=%0d K=%0d stride=%0d pad=%0d pad_value=%0d zero_out=%0d %0s %0s) in %0d cycles, %0dx%0d PEs -> %0s",
                 n_out, oy_count, oh, ow, M, C, K, stride, pad, pad_value, zero_out, act_name, rnd_name, cycles, TM, TP, out_file);
        $finish;
    end
endmodule
