// ULX3S (ECP5-85F, CABGA381) wrapper around the generated snn_top.
//
// Why a wrapper: snn_top is board-independent (clk, synchronous active-high rst, UART).
// The ULX3S 25 MHz oscillator (clk_25mhz, G2) is used directly, without a PLL, so the
// achieved Fmax in report.json is checked against fpga.clock_mhz = 25. There is no
// dedicated reset pin, so a small power-on counter holds rst high for 16 cycles after
// configuration (register initial values are loaded by the bitstream).
// UART through the FT231X: FPGA RX = ftdi_txd (M1), FPGA TX = ftdi_rxd (L4); see boards/ulx3s.lpf.
// CLKS_PER_BIT is set by the flow with `chparam` (clock_mhz * 1e6 / baud).
`default_nettype none

module board_top #(
    parameter integer CLKS_PER_BIT = 8
) (
    input  wire clk_25mhz,
    input  wire ftdi_txd,
    output wire ftdi_rxd
);
    // Power-on reset: rst is high until the counter's top bit sets (16 cycles).
    reg [4:0] por_count = 5'd0;
    wire rst = ~por_count[4];
    always @(posedge clk_25mhz) begin
        if (!por_count[4]) por_count <= por_count + 5'd1;
    end

    snn_top #(
        .CLKS_PER_BIT(CLKS_PER_BIT)
    ) u_snn (
        .clk    (clk_25mhz),
        .rst    (rst),
        .uart_rx(ftdi_txd),
        .uart_tx(ftdi_rxd)
    );
endmodule

`default_nettype wire
