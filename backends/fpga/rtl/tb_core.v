// tb_core: drives snn_core from a command file and logs what it does, for snnc's RTL simulation.
//
//   +stim=FILE   one command per line, "op arg" in decimal:
//                  0 0   clear (start of a sample)
//                  1 i   input neuron i spikes at the next tick
//                  2 0   tick (run one timestep)
//   +out=FILE    one record per line:
//                  1 id           neuron id fired (this tick)
//                  2 id u v       state written back for neuron id (only with +state)
//                  3 cycles       the tick finished after this many clock cycles
//   +state       also log every state write-back (u and v of every neuron, every step)
//   +vlo=A +vhi=B  log the write-backs of neurons A <= id < B even without +state (non-spiking readouts)
// Inputs change on the falling edge, so the core samples them cleanly on the rising edge.
`timescale 1ns/1ps
`default_nettype none

module tb_core;
`include "snnc_config.vh"

    reg clk = 1'b0;
    always #5 clk = ~clk;

    reg rst = 1'b1;
    reg in_valid = 1'b0;
    reg [IN_BITS-1:0] in_index = {IN_BITS{1'b0}};
    reg tick = 1'b0;
    reg clear = 1'b0;
    reg wmem_we = 1'b0;
    wire ready, done, out_valid, wb_valid;
    wire [NEURON_BITS-1:0] out_id, wb_id;
    wire [31:0] step_cycles;
    wire signed [STATE_BITS-1:0] wb_u, wb_v;

    snn_core core (
        .clk(clk), .rst(rst), .in_valid(in_valid), .in_index(in_index), .tick(tick), .clear(clear),
        .ready(ready), .done(done), .out_valid(out_valid), .out_id(out_id), .step_cycles(step_cycles),
        .wmem_we(wmem_we), .wmem_addr({WMEM_ADDR_BITS{1'b0}}), .wmem_wdata({WMEM_WIDTH{1'b0}}),
        .wb_valid(wb_valid), .wb_id(wb_id), .wb_u(wb_u), .wb_v(wb_v));

    integer stim, out, op, arg, got, vlo, vhi;
    reg record_state;
    reg [8*1024-1:0] stim_path, out_path;

    always @(posedge clk) begin
        if (out_valid)
            $fwrite(out, "1 %0d\n", out_id);
        if (wb_valid && (record_state || (wb_id >= vlo && wb_id < vhi)))
            $fwrite(out, "2 %0d %0d %0d\n", wb_id, wb_u, wb_v);
    end

    task wait_done;
        begin
            @(negedge clk);
            while (!done) @(negedge clk);
        end
    endtask

    initial begin
        if (!$value$plusargs("stim=%s", stim_path) || !$value$plusargs("out=%s", out_path)) begin
            $display("tb_core: usage: +stim=FILE +out=FILE [+state]");
            $finish;
        end
        record_state = $test$plusargs("state") ? 1'b1 : 1'b0;
        if (!$value$plusargs("vlo=%d", vlo)) vlo = 0;
        if (!$value$plusargs("vhi=%d", vhi)) vhi = 0;
        stim = $fopen(stim_path, "r");
        out = $fopen(out_path, "w");
        repeat (3) @(negedge clk);
        rst = 1'b0;
        got = $fscanf(stim, "%d %d\n", op, arg);
        while (got == 2) begin
            @(negedge clk);
            if (op == 0) begin
                clear = 1'b1;
                @(negedge clk);
                clear = 1'b0;
                wait_done;
            end else if (op == 1) begin
                in_valid = 1'b1;
                in_index = arg[IN_BITS-1:0];
                @(negedge clk);
                in_valid = 1'b0;
            end else begin
                tick = 1'b1;
                @(negedge clk);
                tick = 1'b0;
                wait_done;
                $fwrite(out, "3 %0d\n", step_cycles);
            end
            got = $fscanf(stim, "%d %d\n", op, arg);
        end
        $fclose(out);
        $finish;
    end
endmodule

`default_nettype wire
