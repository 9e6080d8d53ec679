// snn_core (MOCK) -- stands in for the generated SNN core in the snn_top protocol tests.
//
// It honours the snn_core handshake (ready / done / out_valid, commands only while ready) but computes no network:
// the tests only need outputs that are a known, easily recomputed function of what reached the core, so that a
// lost, doubled or corrupted command shows up in the OUT_SPIKES replies. The rule (tests/test_fpga_protocol.py
// recomputes it):
//   * wmem_we:  wsum <= wsum + wmem_addr + wmem_wdata   (16 bits; the word is also stored, like a real core would)
//   * in_valid: input in_index is queued for the next tick (as neuron in_index % N_NEURONS; duplicates merge)
//   * tick:     with step = ticks since the last clear (before this one), the fired set is
//                   { queued inputs % N_NEURONS } | { (7 * step + 3) % N_NEURONS } | { wsum % N_NEURONS }
//               reported one id per cycle, ascending, after a 3-cycle wait; the queue empties, step increments.
//               step_cycles = N_NEURONS + 4 (clocks from the tick's accept cycle to the done cycle).
//   * clear:    step <= 0 and the input queue empties; done after 4 cycles.
`default_nettype none

module snn_core (
    input  wire clk,
    input  wire rst,
    input  wire in_valid,
    input  wire [IN_BITS-1:0] in_index,
    input  wire tick,
    input  wire clear,
    output wire ready,
    output reg  done,
    output reg  out_valid,
    output reg  [NEURON_BITS-1:0] out_id,
    output reg  [31:0] step_cycles,
    input  wire wmem_we,
    input  wire [WMEM_ADDR_BITS-1:0] wmem_addr,
    input  wire [WMEM_WIDTH-1:0] wmem_wdata,
    output reg  wb_valid,
    output reg  [NEURON_BITS-1:0] wb_id,
    output reg  signed [STATE_BITS-1:0] wb_u,
    output reg  signed [STATE_BITS-1:0] wb_v
);
`include "snnc_config.vh"

    localparam [1:0] S_IDLE = 2'd0, S_WAIT = 2'd1, S_SCAN = 2'd2, S_CLEAR = 2'd3;
    localparam [N_NEURONS-1:0] ONE = 1;

    reg [WMEM_WIDTH-1:0] wmem [0:WMEM_DEPTH-1];
    reg [1:0]            state;
    reg [N_NEURONS-1:0]  pend;    // queued inputs, as neuron ids
    reg [N_NEURONS-1:0]  fire;    // ids to report during this tick
    reg [15:0]           step;
    reg [15:0]           wsum;
    reg [2:0]            wcnt;
    reg [15:0]           scan;
    reg [31:0]           cyc;

    assign ready = (state == S_IDLE);

    always @(posedge clk) begin
        if (wmem_we && ready) wmem[wmem_addr] <= wmem_wdata;
    end

    always @(posedge clk) begin
        done      <= 1'b0;
        out_valid <= 1'b0;
        wb_valid  <= 1'b0;
        wb_id     <= {NEURON_BITS{1'b0}};
        wb_u      <= {STATE_BITS{1'b0}};
        wb_v      <= {STATE_BITS{1'b0}};
        if (rst) begin
            state       <= S_IDLE;
            pend        <= {N_NEURONS{1'b0}};
            fire        <= {N_NEURONS{1'b0}};
            step        <= 16'd0;
            wsum        <= 16'd0;
            wcnt        <= 3'd0;
            scan        <= 16'd0;
            cyc         <= 32'd0;
            out_id      <= {NEURON_BITS{1'b0}};
            step_cycles <= 32'd0;
        end else begin
            case (state)
                S_IDLE: begin
                    wcnt <= 3'd0;
                    cyc  <= 32'd0;
                    if (wmem_we) begin
                        wsum <= wsum + wmem_addr + wmem_wdata;
                    end else if (in_valid) begin
                        pend <= pend | (ONE << (in_index % N_NEURONS));
                    end else if (tick) begin
                        fire  <= pend | (ONE << ((step * 7 + 3) % N_NEURONS)) | (ONE << (wsum % N_NEURONS));
                        pend  <= {N_NEURONS{1'b0}};
                        step  <= step + 1'b1;
                        state <= S_WAIT;
                    end else if (clear) begin
                        state <= S_CLEAR;
                    end
                end
                S_WAIT: begin
                    cyc  <= cyc + 1'b1;
                    wcnt <= wcnt + 1'b1;
                    if (wcnt == 3'd2) begin
                        scan  <= 16'd0;
                        state <= S_SCAN;
                    end
                end
                S_SCAN: begin
                    cyc <= cyc + 1'b1;
                    if (fire[scan]) begin
                        out_valid <= 1'b1;
                        out_id    <= scan[NEURON_BITS-1:0];
                    end
                    scan <= scan + 1'b1;
                    if (scan == N_NEURONS - 1) begin
                        done        <= 1'b1;
                        step_cycles <= cyc + 2;
                        state       <= S_IDLE;
                    end
                end
                default: begin   // S_CLEAR
                    wcnt <= wcnt + 1'b1;
                    if (wcnt == 3'd2) begin
                        step  <= 16'd0;
                        pend  <= {N_NEURONS{1'b0}};
                        done  <= 1'b1;
                        state <= S_IDLE;
                    end
                end
            endcase
        end
    end
endmodule

`default_nettype wire
