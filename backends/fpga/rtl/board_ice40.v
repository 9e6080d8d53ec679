// iCEBreaker (iCE40 UP5K, SG48) wrapper around the generated snn_top.
//
// Why a wrapper: snn_top is board-independent (clk, synchronous active-high rst, UART).
// The iCEBreaker has no need for a clock pin: the on-chip SB_HFOSC gives 48 MHz,
// divided by 2 (CLKHF_DIV = "0b01") to the 24 MHz the hw config assumes (fpga.clock_mhz).
// There is no reset pin either, so a small power-on counter holds rst high for
// 16 cycles after configuration (register initial values are loaded by the bitstream).
// UART pins (FTDI channel B): FPGA RX = pin 6 (rx), FPGA TX = pin 9 (tx); see boards/icebreaker.pcf.
// CLKS_PER_BIT is set by the flow with `chparam` (clock_mhz * 1e6 / baud).
`default_nettype none

module board_top #(
    parameter integer CLKS_PER_BIT = 8
) (
    input  wire rx,
    output wire tx
);
    wire clk;

    SB_HFOSC #(
        .CLKHF_DIV("0b01")
    ) u_osc (
        .CLKHFPU(1'b1),
        .CLKHFEN(1'b1),
        .CLKHF  (clk)
    );

    // Power-on reset: rst is high until the counter's top bit sets (16 cycles).
    reg [4:0] por_count = 5'd0;
    wire rst = ~por_count[4];
    always @(posedge clk) begin
        if (!por_count[4]) por_count <= por_count + 5'd1;
    end

    snn_top #(
        .CLKS_PER_BIT(CLKS_PER_BIT)
    ) u_snn (
        .clk    (clk),
        .rst    (rst),
        .uart_rx(rx),
        .uart_tx(tx)
    );
endmodule

`default_nettype wire
