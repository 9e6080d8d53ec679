// snn_core: a time-multiplexed, event-driven LIF core that runs snnc's integer semantics
// (backends/cpu.py, docs/semantics.md) exactly.
//
// One update unit serves every neuron; every number lives in block RAM:
//
//   state    [N_NEURONS]          {refractory count, v, u}            1R1W, cleared by `clear`
//   acc_l    [SLOTS x words]      pending synaptic input, one bank per lane (neuron n is in bank
//                                 n % LANES, word n / LANES); slot (t + 1 + d) % SLOTS holds what
//                                 arrives at step t + 1 + d, so delays need no queue
//   pset     [N_NEURONS]          parameter-set index of each neuron (absent when all share one set,
//                                 or when every neuron has its own)
//   params   [N_PSETS]            the parameter fields that differ between sets; the others are
//                                 constants in snnc_config.vh
//   ptr      [N_SOURCES]          fan-out of each source: {first segment, segment count, first weight word}
//   seg      [segments]           a run of consecutive targets: {first word, words, delay, weight_exp}
//   weights  [words]              LANES signed weight mantissas per word (SPRAM on iCE40 when large)
//   events   [N_SOURCES]          sources that spiked this step: host inputs, then fired neurons
//
// Sources 0 .. N_NEURONS-1 are the neurons (ids as in snnc's neuron map), N_NEURONS + i is input i.
//
// A tick runs one timestep t in two phases:
//   UPDATE     for n = 0 .. N_NEURONS-1, one neuron per cycle through a 6-stage pipeline:
//                a_in = acc[t % SLOTS][n] (read, then cleared)
//                u = sat(rz(u * keep_u / 4096) + (a_in << 6))
//                v = sat(rz(v * keep_v / 4096) + u + bias)          (v frozen while refractory)
//                fire = spiking & !refractory & v > vth << 6;  reset v: v := radd or v := v + radd
//              fired neurons go to the output port and the event list.
//   PROPAGATE  for every event, for every weight word of its fan-out:
//                acc[(t + 1 + d) % SLOTS][word] += w << weight_exp   in LANES lanes at once
//              (a 2-stage read-modify-write with a one-deep bypass, so back-to-back hits on the
//              same word are exact).
// The synaptic sum is exact (ACC_BITS holds the largest possible sum); u and v saturate at
// +-limit like the reference; rz rounds toward zero by adding 4095 to negative products.
`default_nettype none

module snn_core (
    input  wire                          clk,
    input  wire                          rst,
    input  wire                          in_valid,
    input  wire [IN_BITS-1:0]            in_index,
    input  wire                          tick,
    input  wire                          clear,
    output wire                          ready,
    output reg                           done,
    output reg                           out_valid,
    output reg  [NEURON_BITS-1:0]        out_id,
    output reg  [31:0]                   step_cycles,
    input  wire                          wmem_we,
    input  wire [WMEM_ADDR_BITS-1:0]     wmem_addr,
    input  wire [WMEM_WIDTH-1:0]         wmem_wdata,
    output reg                           wb_valid,
    output reg  [NEURON_BITS-1:0]        wb_id,
    output reg  signed [STATE_BITS-1:0]  wb_u,
    output reg  signed [STATE_BITS-1:0]  wb_v
);
`include "snnc_config.vh"

    localparam integer STATE_WIDTH = REF_BITS + 2 * STATE_BITS;
    localparam integer PTR_WIDTH = SEG_ADDR_BITS + SEGN_BITS + WMEM_ADDR_BITS;
    localparam integer SEG_WIDTH = WORD_BITS + CNT_BITS + DELAY_BITS + EXP_BITS;
    localparam integer CLEAR_LAST = (N_NEURONS > ACC_DEPTH ? N_NEURONS : ACC_DEPTH) - 1;

    localparam [2:0] S_IDLE = 3'd0, S_CLEAR = 3'd1, S_UPDATE = 3'd2, S_PROP = 3'd3, S_DRAIN = 3'd4;
    reg [2:0] phase;
    assign ready = (phase == S_IDLE);

    reg [SLOT_BITS-1:0] slot_now;      // t % SLOTS
    reg [31:0] cycles;

    // ------------------------------------------------------------------ event list
    reg  [SRC_BITS:0]   ev_count;
    reg  [SRC_BITS:0]   ev_read;
    reg                 ev_we;
    reg  [SRC_BITS-1:0] ev_waddr;
    reg  [SRC_BITS-1:0] ev_wdata;
    wire [SRC_BITS-1:0] ev_q;
    snn_ram #(.WIDTH(SRC_BITS), .DEPTH(N_SOURCES), .ADDR_BITS(SRC_BITS)) events (
        .clk(clk), .we(ev_we), .waddr(ev_waddr), .wdata(ev_wdata), .raddr(ev_read[SRC_BITS-1:0]), .rdata(ev_q));

    // ------------------------------------------------------------------ neuron state
    reg                     st_we;
    reg  [NEURON_BITS-1:0]  st_waddr;
    reg  [STATE_WIDTH-1:0]  st_wdata;
    reg  [NEURON_BITS-1:0]  upd_n;            // neuron being issued in UPDATE
    wire [STATE_WIDTH-1:0]  st_q;
    snn_ram #(.WIDTH(STATE_WIDTH), .DEPTH(N_NEURONS), .ADDR_BITS(NEURON_BITS)) state (
        .clk(clk), .we(st_we), .waddr(st_waddr), .wdata(st_wdata), .raddr(upd_n), .rdata(st_q));

    // ------------------------------------------------------------------ parameters
    wire [PSET_BITS-1:0] pset_q;
    generate
        if (PSET_MODE == 2) begin : g_pset_table
            snn_ram #(.WIDTH(PSET_BITS), .DEPTH(N_NEURONS), .ADDR_BITS(NEURON_BITS), .INIT("pset.mem")) pset (
                .clk(clk), .we(1'b0), .waddr({NEURON_BITS{1'b0}}), .wdata({PSET_BITS{1'b0}}), .raddr(upd_n),
                .rdata(pset_q));
        end else begin : g_pset_none
            reg [PSET_BITS-1:0] n_delayed;
            always @(posedge clk) n_delayed <= (PSET_MODE == 1) ? upd_n[PSET_BITS-1:0] : {PSET_BITS{1'b0}};
            assign pset_q = n_delayed;
        end
    endgenerate

    wire [PARAM_WIDTH-1:0] param_q;
    generate
        if (PARAM_VARY) begin : g_params
            snn_ram #(.WIDTH(PARAM_WIDTH), .DEPTH(N_PSETS), .ADDR_BITS(PSET_BITS), .INIT("params.mem")) params (
                .clk(clk), .we(1'b0), .waddr({PSET_BITS{1'b0}}), .wdata({PARAM_WIDTH{1'b0}}), .raddr(pset_q),
                .rdata(param_q));
        end else begin : g_params_const
            assign param_q = {PARAM_WIDTH{1'b0}};
        end
    endgenerate

    // each field is either a slice of the parameter word or a constant of the whole network
    wire signed [13:0]           p_keep_u, p_keep_v;
    wire signed [VTH_BITS-1:0]   p_vth;
    wire signed [BIAS_BITS-1:0]  p_bias;
    wire                         p_radd_mode;
    wire signed [RADD_BITS-1:0]  p_radd;
    wire                         p_spiking;
    wire [REF_BITS-1:0]          p_refractory;
    wire signed [STATE_BITS-1:0] p_limit;
    generate
        if (KEEP_U_VARY) begin : g_ku assign p_keep_u = param_q[KEEP_U_LSB +: 14]; end
        else begin : g_ku_c assign p_keep_u = KEEP_U_CONST[13:0]; end
        if (KEEP_V_VARY) begin : g_kv assign p_keep_v = param_q[KEEP_V_LSB +: 14]; end
        else begin : g_kv_c assign p_keep_v = KEEP_V_CONST[13:0]; end
        if (VTH_VARY) begin : g_vth assign p_vth = param_q[VTH_LSB +: VTH_BITS]; end
        else begin : g_vth_c assign p_vth = VTH_CONST[VTH_BITS-1:0]; end
        if (BIAS_VARY) begin : g_bias assign p_bias = param_q[BIAS_LSB +: BIAS_BITS]; end
        else begin : g_bias_c assign p_bias = BIAS_CONST[BIAS_BITS-1:0]; end
        if (RMODE_VARY) begin : g_rm assign p_radd_mode = param_q[RMODE_LSB]; end
        else begin : g_rm_c assign p_radd_mode = RMODE_CONST[0]; end
        if (RADD_VARY) begin : g_ra assign p_radd = param_q[RADD_LSB +: RADD_BITS]; end
        else begin : g_ra_c assign p_radd = RADD_CONST[RADD_BITS-1:0]; end
        if (SPIKING_VARY) begin : g_sp assign p_spiking = param_q[SPIKING_LSB]; end
        else begin : g_sp_c assign p_spiking = SPIKING_CONST[0]; end
        if (REFR_VARY) begin : g_rf assign p_refractory = param_q[REFR_LSB +: REF_BITS]; end
        else begin : g_rf_c assign p_refractory = REFR_CONST[REF_BITS-1:0]; end
        if (LIMIT_VARY) begin : g_li assign p_limit = param_q[LIMIT_LSB +: STATE_BITS]; end
        else begin : g_li_c assign p_limit = LIMIT_CONST[STATE_BITS-1:0]; end
    endgenerate

    // ------------------------------------------------------------------ fan-out tables
    // read with the event list's output word: the source of the event being started
    wire [PTR_WIDTH-1:0]      ptr_q;
    snn_ram #(.WIDTH(PTR_WIDTH), .DEPTH(N_SOURCES), .ADDR_BITS(SRC_BITS), .INIT("ptr.mem")) ptr (
        .clk(clk), .we(1'b0), .waddr({SRC_BITS{1'b0}}), .wdata({PTR_WIDTH{1'b0}}), .raddr(ev_q), .rdata(ptr_q));
    wire [WMEM_ADDR_BITS-1:0] ptr_wstart = ptr_q[WMEM_ADDR_BITS-1:0];
    wire [SEGN_BITS-1:0]      ptr_nseg   = ptr_q[WMEM_ADDR_BITS +: SEGN_BITS];
    wire [SEG_ADDR_BITS-1:0]  ptr_seg    = ptr_q[WMEM_ADDR_BITS + SEGN_BITS +: SEG_ADDR_BITS];

    reg  [SEG_ADDR_BITS-1:0]  seg_addr;
    wire [SEG_WIDTH-1:0]      seg_q;
    snn_ram #(.WIDTH(SEG_WIDTH), .DEPTH(SEG_DEPTH), .ADDR_BITS(SEG_ADDR_BITS), .INIT("seg.mem")) seg (
        .clk(clk), .we(1'b0), .waddr({SEG_ADDR_BITS{1'b0}}), .wdata({SEG_WIDTH{1'b0}}), .raddr(seg_addr),
        .rdata(seg_q));
    wire [EXP_BITS-1:0]   seg_exp   = seg_q[EXP_BITS-1:0];
    wire [DELAY_BITS-1:0] seg_delay = seg_q[EXP_BITS +: DELAY_BITS];
    wire [CNT_BITS-1:0]   seg_count = seg_q[EXP_BITS + DELAY_BITS +: CNT_BITS];
    wire [WORD_BITS-1:0]  seg_word  = seg_q[EXP_BITS + DELAY_BITS + CNT_BITS +: WORD_BITS];

    reg  [WMEM_ADDR_BITS-1:0] w_addr;
    wire [WMEM_WIDTH-1:0]     w_q;
    wire                      w_host = ready & wmem_we;
    generate
        if (WMEM_SPRAM) begin : g_wspram
            snn_spram #(.WIDTH(WMEM_WIDTH), .DEPTH(WMEM_DEPTH), .ADDR_BITS(WMEM_ADDR_BITS), .INIT("weights.mem")) weights (
                .clk(clk), .we(w_host), .addr(w_host ? wmem_addr : w_addr), .wdata(wmem_wdata), .rdata(w_q));
        end else begin : g_wram
            snn_ram #(.WIDTH(WMEM_WIDTH), .DEPTH(WMEM_DEPTH), .ADDR_BITS(WMEM_ADDR_BITS), .INIT("weights.mem")) weights (
                .clk(clk), .we(w_host), .waddr(wmem_addr), .wdata(wmem_wdata), .raddr(w_addr), .rdata(w_q));
        end
    endgenerate

    // ------------------------------------------------------------------ accumulator banks
    reg  [ACC_ADDR_BITS-1:0] acc_raddr;                  // shared by all lanes
    wire [LANES*ACC_BITS-1:0] acc_q;
    reg  [LANES-1:0]          acc_we;             // combinational (below): a sum is written the cycle it is made
    reg  [ACC_ADDR_BITS-1:0]  acc_waddr;
    reg  [LANES*ACC_BITS-1:0] acc_wdata;
    genvar lane;
    generate
        for (lane = 0; lane < LANES; lane = lane + 1) begin : g_acc
            snn_ram #(.WIDTH(ACC_BITS), .DEPTH(ACC_DEPTH), .ADDR_BITS(ACC_ADDR_BITS)) bank (
                .clk(clk), .we(acc_we[lane]), .waddr(acc_waddr), .wdata(acc_wdata[lane*ACC_BITS +: ACC_BITS]),
                .raddr(acc_raddr), .rdata(acc_q[lane*ACC_BITS +: ACC_BITS]));
        end
    endgenerate

    function [ACC_ADDR_BITS-1:0] acc_address(input [SLOT_BITS-1:0] slot, input [WORD_BITS-1:0] word);
        acc_address = ({{ACC_ADDR_BITS{1'b0}}, slot} & (SLOTS - 1)) * ACC_WORDS_PAD + word;
    endfunction

    // ------------------------------------------------------------------ UPDATE pipeline
    // stage k registers carry neuron n_k; s1 = memories read, s2 = parameters read, s3 = products,
    // s4 = new u and decayed v, s5 = new v before the threshold, s6 = spike/reset, written back.
    reg                          issue;            // UPDATE is issuing upd_n this cycle
    reg                          v1, v2, v3, v4, v5, v6;
    reg  [NEURON_BITS-1:0]       n1, n2, n3, n4, n5, n6;
    reg  [LANE_BITS-1:0]         b1;              // bank of n1
    reg  [ACC_ADDR_BITS-1:0]     a1;              // accumulator word of n1, cleared in stage 1
    reg  signed [STATE_BITS-1:0] u2, v2old, v3old, v4old, v5old;
    reg  [REF_BITS-1:0]          r2, r3, r4, r5;
    reg  signed [ACC_BITS-1:0]   ain2;
    reg  signed [PU_W-1:0]       pu3, pv3;
    reg  signed [A6_W-1:0]       a6_3;
    reg  signed [BIAS_BITS-1:0]  bias3;
    reg  signed [VTH_BITS-1:0]   vth3, vth4, vth5;
    reg                          rm3, rm4, rm5, sp3, sp4, sp5;
    reg  signed [RADD_BITS-1:0]  radd3, radd4, radd5;
    reg  [REF_BITS-1:0]          refr3, refr4, refr5;
    reg  signed [STATE_BITS-1:0] lim3, lim4, lim5;
    reg  signed [STATE_BITS-1:0] un4, un5;
    reg  signed [VD_W-1:0]       vd4;
    reg  signed [STATE_BITS-1:0] vn5;
    reg                          resting5;

    wire signed [ACC_BITS-1:0]   ain1 = acc_q[b1 * ACC_BITS +: ACC_BITS];
    wire [STATE_BITS-1:0]        st_u = st_q[STATE_BITS-1:0];
    wire [STATE_BITS-1:0]        st_v = st_q[STATE_BITS +: STATE_BITS];
    wire [REF_BITS-1:0]          st_r = st_q[2*STATE_BITS +: REF_BITS];

    // stage 3 -> 4: rz(p / 4096) = (p + (p < 0 ? 4095 : 0)) >>> 12
    wire signed [PU_W-1:0]  pu_round = pu3 + $signed({{(PU_W-12){1'b0}}, {12{pu3[PU_W-1]}}});
    wire signed [PU_W-1:0]  pv_round = pv3 + $signed({{(PU_W-12){1'b0}}, {12{pv3[PU_W-1]}}});
    wire signed [PU_W-1:0]  u_decayed = pu_round >>> 12;
    wire signed [PU_W-1:0]  v_decayed = pv_round >>> 12;
    wire signed [UN_W-1:0]  un_raw = u_decayed + a6_3;
    wire signed [UN_W-1:0]  lim3_w = lim3;
    wire signed [STATE_BITS-1:0] un_sat = (un_raw > lim3_w) ? lim3 : (un_raw < -lim3_w) ? -lim3 : un_raw[STATE_BITS-1:0];
    // stage 4 -> 5
    wire signed [VS_W-1:0]  vs_raw = vd4 + un4;
    wire signed [VS_W-1:0]  lim4_w = lim4;
    wire signed [STATE_BITS-1:0] vs_sat = (vs_raw > lim4_w) ? lim4 : (vs_raw < -lim4_w) ? -lim4 : vs_raw[STATE_BITS-1:0];
    // stage 5 -> 6
    wire signed [VS_W-1:0]  vth5_w = vth5;
    wire signed [VS_W-1:0]  vn5_w = vn5;
    wire                    fire5 = sp5 & ~resting5 & (vn5_w > vth5_w);
    wire signed [VS_W-1:0]  vr_raw = rm5 ? vn5_w + radd5 : radd5;
    wire signed [VS_W-1:0]  lim5_w = lim5;
    wire signed [STATE_BITS-1:0] vr_sat = (vr_raw > lim5_w) ? lim5 : (vr_raw < -lim5_w) ? -lim5 : vr_raw[STATE_BITS-1:0];

    always @(posedge clk) begin
        v1 <= issue;
        n1 <= upd_n;
        b1 <= (LANES == 1) ? {LANE_BITS{1'b0}} : upd_n % LANES;
        a1 <= acc_address(slot_now, upd_n / LANES);
        // stage 2: state and input arrive; the parameter word is being read
        v2 <= v1; n2 <= n1;
        u2 <= st_u; v2old <= st_v; r2 <= st_r; ain2 <= ain1;
        // stage 3: parameters arrive; both decays multiply in parallel
        v3 <= v2; n3 <= n2;
        pu3 <= u2 * p_keep_u;
        pv3 <= v2old * p_keep_v;
        a6_3 <= ain2 <<< 6;
        bias3 <= p_bias; vth3 <= p_vth; rm3 <= p_radd_mode; radd3 <= p_radd; sp3 <= p_spiking;
        refr3 <= p_refractory; lim3 <= p_limit; v3old <= v2old; r3 <= r2;
        // stage 4: new u; decayed v plus bias
        v4 <= v3; n4 <= n3;
        un4 <= un_sat;
        vd4 <= v_decayed + bias3;
        vth4 <= vth3; rm4 <= rm3; radd4 <= radd3; sp4 <= sp3; refr4 <= refr3; lim4 <= lim3; v4old <= v3old; r4 <= r3;
        // stage 5: new v (a refractory neuron keeps its v)
        v5 <= v4; n5 <= n4;
        un5 <= un4;
        resting5 <= (r4 != 0);
        vn5 <= (r4 != 0) ? v4old : vs_sat;
        vth5 <= vth4; rm5 <= rm4; radd5 <= radd4; sp5 <= sp4; refr5 <= refr4; lim5 <= lim4; r5 <= r4;
        // stage 6: threshold, reset, refractory counter; written back below
        v6 <= v5; n6 <= n5;
    end

    // ------------------------------------------------------------------ PROPAGATE address generator
    localparam [2:0] P_EVENT = 3'd0, P_PTR = 3'd1, P_PTRQ = 3'd2, P_SEG = 3'd3, P_WORDS = 3'd4, P_NEXT = 3'd5;
    reg  [2:0]               pstate;
    reg  [SEGN_BITS-1:0]     segs_left;
    reg  [CNT_BITS-1:0]      words_left;
    reg  [WORD_BITS-1:0]     word_now;
    reg  [SLOT_BITS-1:0]     slot_target;
    reg  [EXP_BITS-1:0]      exp_now;
    reg                      x1_valid, x2_valid, x3_valid;
    reg  [ACC_ADDR_BITS-1:0] x1_addr, x2_addr, x3_addr;
    reg  [EXP_BITS-1:0]      x1_exp;
    reg  [LANES*ACC_BITS-1:0] x2_eff, x3_sum;
    // lane k's new sum: the word just read, or the sum written last cycle if it was the same word
    reg  [LANES*ACC_BITS-1:0] lane_sums;
    integer j;
    always @(*) begin
        for (j = 0; j < LANES; j = j + 1)
            lane_sums[j*ACC_BITS +: ACC_BITS] =
                ((x3_valid && x3_addr == x2_addr) ? x3_sum[j*ACC_BITS +: ACC_BITS] : acc_q[j*ACC_BITS +: ACC_BITS])
                + x2_eff[j*ACC_BITS +: ACC_BITS];
    end

    reg                          fire5_r6;
    reg  signed [STATE_BITS-1:0] un6, vout6;
    reg  [REF_BITS-1:0]          r6, refr6;
    reg  [31:0]                  clear_addr;
    reg                          drain_wait;

    // ------------------------------------------------------------------ control
    integer k;
    always @(posedge clk) begin
        done <= 1'b0;
        out_valid <= 1'b0;
        wb_valid <= 1'b0;
        ev_we <= 1'b0;
        st_we <= 1'b0;
        issue <= 1'b0;
        x1_valid <= 1'b0;
        if (phase != S_IDLE)
            cycles <= cycles + 1;

        // UPDATE stage 6: write back, report the spike, queue it as an event
        if (v6) begin
            st_we <= 1'b1;
            st_waddr <= n6;
            st_wdata <= {fire5_r6 ? refr6 : (r6 != 0 ? r6 - 1'b1 : {REF_BITS{1'b0}}), vout6, un6};
            wb_valid <= 1'b1;
            wb_id <= n6;
            wb_u <= un6;
            wb_v <= vout6;
            if (fire5_r6) begin
                out_valid <= 1'b1;
                out_id <= n6;
                ev_we <= 1'b1;
                ev_waddr <= ev_count[SRC_BITS-1:0];
                ev_wdata <= n6;
                ev_count <= ev_count + 1'b1;
            end
        end
        // PROPAGATE lanes: stage x2 reads the accumulator words, stage x3 writes the sums
        x2_valid <= x1_valid;
        x2_addr <= x1_addr;
        for (k = 0; k < LANES; k = k + 1)
            x2_eff[k*ACC_BITS +: ACC_BITS] <= $signed(w_q[k*WEIGHT_BITS +: WEIGHT_BITS]) <<< x1_exp;
        x3_valid <= x2_valid;
        x3_addr <= x2_addr;
        x3_sum <= lane_sums;

        case (phase)
            S_IDLE: begin
                if (in_valid && ev_count < N_SOURCES) begin
                    ev_we <= 1'b1;
                    ev_waddr <= ev_count[SRC_BITS-1:0];
                    ev_wdata <= N_NEURONS + in_index;
                    ev_count <= ev_count + 1'b1;
                end else if (tick) begin
                    phase <= S_UPDATE;
                    cycles <= 32'd1;
                    upd_n <= {NEURON_BITS{1'b0}};
                    issue <= 1'b1;
                end else if (clear) begin
                    phase <= S_CLEAR;
                    clear_addr <= 0;
                end
            end
            S_CLEAR: begin
                if (clear_addr < N_NEURONS) begin
                    st_we <= 1'b1;
                    st_waddr <= clear_addr[NEURON_BITS-1:0];
                    st_wdata <= {STATE_WIDTH{1'b0}};
                end
                clear_addr <= clear_addr + 1;
                if (clear_addr == CLEAR_LAST) begin
                    phase <= S_IDLE;
                    slot_now <= {SLOT_BITS{1'b0}};
                    ev_count <= 0;
                    done <= 1'b1;
                end
            end
            S_UPDATE: begin
                if (upd_n != N_NEURONS - 1) begin
                    upd_n <= upd_n + 1'b1;
                    issue <= 1'b1;
                end else if (!issue && !v1 && !v2 && !v3 && !v4 && !v5 && !v6) begin
                    phase <= S_PROP;          // pipeline empty: every spike of this step is in the event list
                    pstate <= P_EVENT;
                    ev_read <= 0;
                end
            end
            S_PROP: begin
                case (pstate)
                    P_EVENT: begin
                        if (ev_read == ev_count) begin
                            phase <= S_DRAIN;
                            drain_wait <= 1'b1;
                        end else begin
                            pstate <= P_PTR;      // ev_q is valid next cycle
                        end
                    end
                    P_PTR: begin              // ev_q valid: the pointer word is read
                        ev_read <= ev_read + 1'b1;
                        pstate <= P_PTRQ;
                    end
                    P_PTRQ: begin             // ptr_q valid
                        if (ptr_nseg == 0) begin
                            pstate <= P_EVENT;
                        end else begin
                            seg_addr <= ptr_seg;
                            segs_left <= ptr_nseg;
                            w_addr <= ptr_wstart;
                            pstate <= P_SEG;
                        end
                    end
                    P_SEG: begin              // waiting one cycle for seg_q
                        pstate <= P_NEXT;
                    end
                    P_NEXT: begin             // seg_q valid: start its words
                        word_now <= seg_word;
                        words_left <= seg_count;
                        slot_target <= slot_now + 1'b1 + seg_delay;
                        exp_now <= seg_exp;
                        pstate <= P_WORDS;
                    end
                    P_WORDS: begin            // w_addr is being read this cycle
                        x1_valid <= 1'b1;
                        x1_addr <= acc_address(slot_target, word_now);
                        x1_exp <= exp_now;
                        w_addr <= w_addr + 1'b1;
                        word_now <= word_now + 1'b1;
                        words_left <= words_left - 1'b1;
                        if (words_left == 1) begin
                            segs_left <= segs_left - 1'b1;
                            seg_addr <= seg_addr + 1'b1;
                            pstate <= (segs_left == 1) ? P_EVENT : P_SEG;
                        end
                    end
                    default: pstate <= P_EVENT;
                endcase
            end
            S_DRAIN: begin                    // two cycles: the last word issued is summed and written
                drain_wait <= 1'b0;
                if (!drain_wait) begin
                    phase <= S_IDLE;
                    slot_now <= slot_now + 1'b1;
                    ev_count <= 0;
                    step_cycles <= cycles;
                    done <= 1'b1;
                end
            end
            default: phase <= S_IDLE;
        endcase

        if (rst) begin
            phase <= S_IDLE;
            ev_count <= 0;
            slot_now <= {SLOT_BITS{1'b0}};
            issue <= 1'b0;
            x1_valid <= 1'b0;
            step_cycles <= 32'd0;
            cycles <= 32'd0;
        end
    end

    // the accumulator ports: UPDATE reads the neuron being issued and clears its word one cycle
    // later (after the read); PROPAGATE reads the word of x1 and writes the new sums of x2
    always @(*) begin
        acc_raddr = (phase == S_UPDATE) ? acc_address(slot_now, upd_n / LANES) : x1_addr;
        acc_we = {LANES{1'b0}};
        acc_waddr = x2_addr;
        acc_wdata = lane_sums;
        if (phase == S_CLEAR) begin
            acc_we = (clear_addr < ACC_DEPTH) ? {LANES{1'b1}} : {LANES{1'b0}};
            acc_waddr = clear_addr[ACC_ADDR_BITS-1:0];
            acc_wdata = {LANES*ACC_BITS{1'b0}};
        end else if (v1) begin
            acc_we[b1] = 1'b1;
            acc_waddr = a1;
            acc_wdata = {LANES*ACC_BITS{1'b0}};
        end else if (x2_valid) begin
            acc_we = {LANES{1'b1}};
        end
    end

    // stage 6 registers (the spike decision of stage 5)
    always @(posedge clk) begin
        fire5_r6 <= fire5;
        un6 <= un5;
        vout6 <= fire5 ? vr_sat : vn5;
        r6 <= r5;
        refr6 <= refr5;
    end
endmodule

`default_nettype wire
