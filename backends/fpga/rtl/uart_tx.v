// uart_tx -- 8N1 UART transmitter for the snnc host link.
//
// A start pulse while the transmitter is idle latches data and sends start bit (low), 8 data bits LSB first and a
// stop bit (high), each CLKS_PER_BIT clocks long. busy is high from the cycle start is asserted until the stop bit
// has been sent completely; it includes start itself so that a client which registers start and then polls busy
// on the next cycle never sees a stale "idle". start while busy is ignored.
`default_nettype none

module uart_tx #(
    parameter integer CLKS_PER_BIT = 8
) (
    input  wire       clk,
    input  wire       rst,     // synchronous, active high
    input  wire       start,   // send data (only honoured while busy is low)
    input  wire [7:0] data,
    output reg        tx,      // serial output, idle high
    output wire       busy
);
    localparam integer CW = $clog2(CLKS_PER_BIT + 1);
    localparam [CW-1:0] FULL = CLKS_PER_BIT - 1;

    reg          active;
    reg [CW-1:0] cnt;      // clocks into the current bit
    reg [3:0]    nbit;     // bits still to send after the current one
    reg [8:0]    shift;    // {stop, data}; shift[0] follows the current bit

    assign busy = active | start;

    always @(posedge clk) begin
        if (rst) begin
            active <= 1'b0;
            tx     <= 1'b1;
            cnt    <= {CW{1'b0}};
            nbit   <= 4'd0;
            shift  <= 9'h1ff;
        end else if (!active) begin
            tx <= 1'b1;
            if (start) begin
                active <= 1'b1;
                tx     <= 1'b0;               // start bit
                shift  <= {1'b1, data};
                cnt    <= {CW{1'b0}};
                nbit   <= 4'd9;               // 8 data bits + stop bit follow
            end
        end else if (cnt != FULL) begin
            cnt <= cnt + 1'b1;
        end else begin
            cnt <= {CW{1'b0}};
            if (nbit == 4'd0) begin
                active <= 1'b0;               // stop bit done
                tx     <= 1'b1;
            end else begin
                tx    <= shift[0];
                shift <= {1'b1, shift[8:1]};
                nbit  <= nbit - 1'b1;
            end
        end
    end
endmodule

`default_nettype wire
