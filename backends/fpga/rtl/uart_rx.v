// uart_rx -- 8N1 UART receiver for the snnc host link.
//
// The line is asynchronous to clk, so it first passes a 2-flop synchronizer (metastability). A falling edge starts
// a byte; the start bit is re-checked at its middle so that a glitch shorter than half a bit is ignored rather than
// read as a byte. Data bits (LSB first) and the stop bit are then sampled at their middles, CLKS_PER_BIT clocks
// apart. A low stop bit is a framing error: the byte is dropped (frame_err pulses instead of valid) and the
// receiver waits for the line to go high again before looking for the next start bit, so a break or a baud-rate
// mismatch cannot produce a stream of bogus bytes.
//
// Outputs: valid pulses for one clock with data holding the byte; frame_err pulses for one clock on a bad stop bit.
// CLKS_PER_BIT must be >= 4 (clock frequency / baud rate).
`default_nettype none

module uart_rx #(
    parameter integer CLKS_PER_BIT = 8
) (
    input  wire       clk,
    input  wire       rst,        // synchronous, active high
    input  wire       rx,         // asynchronous serial input, idle high
    output reg        valid,      // one-cycle pulse: data holds a received byte
    output reg  [7:0] data,
    output reg        frame_err   // one-cycle pulse: stop bit was low, byte dropped
);
    localparam integer CW = $clog2(CLKS_PER_BIT + 1);
    localparam [CW-1:0] HALF = CLKS_PER_BIT / 2 - 1;   // clocks from the start edge to the start bit's middle
    localparam [CW-1:0] FULL = CLKS_PER_BIT - 1;

    localparam [2:0] S_IDLE = 3'd0, S_START = 3'd1, S_DATA = 3'd2, S_STOP = 3'd3, S_WAIT_HIGH = 3'd4;

    // 2-flop synchronizer; reset to the idle level so reset does not look like a start bit.
    reg rx_m, rx_s;
    always @(posedge clk) begin
        if (rst) begin
            rx_m <= 1'b1;
            rx_s <= 1'b1;
        end else begin
            rx_m <= rx;
            rx_s <= rx_m;
        end
    end

    reg [2:0]    state;
    reg [CW-1:0] cnt;      // clocks into the current bit
    reg [2:0]    nbit;     // data bit being received
    reg [7:0]    shift;

    always @(posedge clk) begin
        valid     <= 1'b0;
        frame_err <= 1'b0;
        if (rst) begin
            state <= S_IDLE;
            cnt   <= {CW{1'b0}};
            nbit  <= 3'd0;
            shift <= 8'd0;
            data  <= 8'd0;
        end else begin
            case (state)
                S_IDLE: begin
                    cnt <= {CW{1'b0}};
                    if (!rx_s) state <= S_START;
                end
                S_START: begin
                    if (cnt == HALF) begin
                        // Still low at the middle: a real start bit. Otherwise it was a glitch.
                        cnt   <= {CW{1'b0}};
                        nbit  <= 3'd0;
                        state <= rx_s ? S_IDLE : S_DATA;
                    end else begin
                        cnt <= cnt + 1'b1;
                    end
                end
                S_DATA: begin
                    if (cnt == FULL) begin
                        cnt   <= {CW{1'b0}};
                        shift <= {rx_s, shift[7:1]};     // LSB first
                        nbit  <= nbit + 1'b1;
                        if (nbit == 3'd7) state <= S_STOP;
                    end else begin
                        cnt <= cnt + 1'b1;
                    end
                end
                S_STOP: begin
                    if (cnt == FULL) begin
                        cnt <= {CW{1'b0}};
                        if (rx_s) begin
                            valid <= 1'b1;
                            data  <= shift;
                            state <= S_IDLE;
                        end else begin
                            frame_err <= 1'b1;
                            state     <= S_WAIT_HIGH;
                        end
                    end else begin
                        cnt <= cnt + 1'b1;
                    end
                end
                default: begin  // S_WAIT_HIGH: after a framing error, resume only once the line is idle again
                    if (rx_s) state <= S_IDLE;
                end
            endcase
        end
    end
endmodule

`default_nettype wire
