// snn_ram: one block-RAM memory with one write port and one registered read port.
//
// Written in the form yosys maps to SB_RAM40_4K (iCE40) and DP16KD (ECP5); the read
// register is the RAM's own output register. A read and a write of the same address in
// the same cycle return the old word; the core never relies on that case (it bypasses).
// INIT names a $readmemh image (empty: no initial contents; the core clears what it needs).
`default_nettype none

module snn_ram #(
    parameter integer WIDTH = 8,
    parameter integer DEPTH = 256,
    parameter integer ADDR_BITS = 8,
    parameter INIT = ""
) (
    input  wire                 clk,
    input  wire                 we,
    input  wire [ADDR_BITS-1:0] waddr,
    input  wire [WIDTH-1:0]     wdata,
    input  wire [ADDR_BITS-1:0] raddr,
    output reg  [WIDTH-1:0]     rdata
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];

    generate
        if (INIT != "") begin : g_init
            initial $readmemh(INIT, mem);
        end
    endgenerate

    always @(posedge clk) begin
        if (we)
            mem[waddr] <= wdata;
        rdata <= mem[raddr];
    end
endmodule

// snn_spram: a single-port memory for large weight tables, mapped to iCE40 SPRAM
// (SB_SPRAM256KA) by `synth_ice40 -spram` through ram_style "huge" (research/fpga.md §1.1).
// SPRAM cannot be initialised by the bitstream: on hardware the host writes the weights
// over the UART (WRITE_MEM) before the first tick. Simulation preloads INIT instead, which
// is what those writes leave behind (tests check the UART path separately).
module snn_spram #(
    parameter integer WIDTH = 16,
    parameter integer DEPTH = 16384,
    parameter integer ADDR_BITS = 14,
    parameter INIT = ""
) (
    input  wire                 clk,
    input  wire                 we,
    input  wire [ADDR_BITS-1:0] addr,
    input  wire [WIDTH-1:0]     wdata,
    output reg  [WIDTH-1:0]     rdata
);
    (* ram_style = "huge" *) reg [WIDTH-1:0] mem [0:DEPTH-1];

`ifndef SYNTHESIS
    generate
        if (INIT != "") begin : g_init
            initial $readmemh(INIT, mem);
        end
    endgenerate
`endif

    // SPRAM has no read-during-write: a write cycle reads nothing
    always @(posedge clk) begin
        if (we)
            mem[addr] <= wdata;
        else
            rdata <= mem[addr];
    end
endmodule

`default_nettype wire
