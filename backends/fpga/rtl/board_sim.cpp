// board_sim.cpp -- a simulated snnc FPGA board: the Verilated snn_top behind a file descriptor (a pty master).
//
// Built by backends/fpga/board_sim.py with Verilator 5 (--cc --exe --build, top snn_top, -GCLKS_PER_BIT=<cpb>) and
// run with the RTL directory (the $readmemh images) as its working directory:
//
//     Vboard_sim --fd N [--cpb C] [--idle-cycles K] [--seed S] [--drop-rx P] [--corrupt-rx P] [--drop-tx P]
//                [--corrupt-tx P] [--drop-rx-at I,J,..] [--corrupt-rx-at ..] [--drop-tx-at ..] [--corrupt-tx-at ..]
//
// UART bridge, bit exact: every byte read from fd N is sent 8N1 onto uart_rx (start bit 0, 8 data bits LSB first,
// stop bit 1, C clock cycles per bit, back to back); uart_tx is sampled in the middle of each bit and every byte
// with a good stop bit is written to fd N (a bad stop bit drops the byte, as a host UART would).
//
// Control channel (stdin / stdout, one line each way; the process answers every command before reading the next):
//     "reset"                  pulse rst for 8 cycles like a reset button: the byte on the wire in either
//                              direction is lost, bytes read from fd N but not yet sent and bytes still unread in
//                              fd N are discarded. Answer "ok reset" once the board is out of reset.
//     "faults S P P P P L L L L" seed, drop-rx, corrupt-rx, drop-tx, corrupt-tx probabilities and the four index
//                              lists (comma separated, "-" for none), as on the command line. Answer "ok faults".
//     "stats"                  answer "ok stats cycles=.. rx=.. tx=.. rx_dropped=.. rx_corrupted=.. tx_dropped=..
//                              tx_corrupted=.. sleeps=.."
// At start, after 8 cycles of reset, the process prints "ready". It ends on EOF on stdin (the parent closed the pipe
// or died), a hang-up of fd N (the pty slave was closed), a change of its parent process (checked at least once a
// second; unlike PR_SET_PDEATHSIG this does not fire when merely the thread that started it exits) or SIGTERM.
//
// Faults (deterministic for a seed): every byte from the host (rx) and from the design (tx) is numbered from 0,
// counting from start or from the last "faults" command, which also reseeds the generator (splitmix64). A byte is
// dropped when its index is listed or with probability drop-*; otherwise corrupted (one random bit flipped) when
// listed or with probability corrupt-*. A dropped rx byte never reaches the wire; a dropped tx byte is not written.
//
// Idle: the model is clocked only while something can happen. When no host byte is waiting, neither UART is mid
// byte and the pins have been quiet for --idle-cycles cycles (board_sim.py derives it from the design: longer than
// the frame timeout plus the longest step, CLEAR and WRITE_MEM), the process sleeps in poll() on fd N and stdin.
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include "Vsnn_top.h"
#include "verilated.h"

namespace {

constexpr int RESET_CYCLES = 8;
constexpr int POLL_EVERY = 256;          // cycles between non-blocking checks of fd and stdin while clocking
constexpr int SLEEP_MS = 1000;           // poll() timeout while idle (parent death is also caught by stdin EOF)
constexpr size_t READ_AHEAD = 4096;      // host bytes buffered before the serializer

volatile sig_atomic_t g_stop = 0;

void on_term(int) { g_stop = 1; }

struct Faults {
    uint64_t state = 0;
    double drop_rx = 0, corrupt_rx = 0, drop_tx = 0, corrupt_tx = 0;
    std::set<uint64_t> drop_rx_at, corrupt_rx_at, drop_tx_at, corrupt_tx_at;
    uint64_t rx_index = 0, tx_index = 0;

    void seed(uint64_t s) { state = s; }

    uint64_t next() {  // splitmix64: small, portable, deterministic
        uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }

    bool chance(double p) { return p > 0 && static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }

    // Applies the faults of one direction to byte `b`; returns false when it is dropped.
    bool apply(uint8_t& b, bool rx, uint64_t& dropped, uint64_t& corrupted) {
        uint64_t index = rx ? rx_index++ : tx_index++;
        bool drop_listed = (rx ? drop_rx_at : drop_tx_at).count(index) > 0;
        bool corrupt_listed = (rx ? corrupt_rx_at : corrupt_tx_at).count(index) > 0;
        // both draws are always made so one direction's settings do not shift the other's sequence
        bool drop_drawn = chance(rx ? drop_rx : drop_tx);
        bool corrupt_drawn = chance(rx ? corrupt_rx : corrupt_tx);
        uint8_t bit = static_cast<uint8_t>(next() & 7);
        if (drop_listed || drop_drawn) {
            ++dropped;
            return false;
        }
        if (corrupt_listed || corrupt_drawn) {
            b ^= static_cast<uint8_t>(1u << bit);
            ++corrupted;
        }
        return true;
    }
};

bool parse_list(const std::string& text, std::set<uint64_t>& out) {
    out.clear();
    if (text == "-" || text.empty()) return true;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
        char* end = nullptr;
        errno = 0;
        unsigned long long v = std::strtoull(item.c_str(), &end, 10);
        if (errno || end == item.c_str() || *end) return false;
        out.insert(v);
    }
    return true;
}

bool parse_prob(const std::string& text, double& out) {
    char* end = nullptr;
    out = std::strtod(text.c_str(), &end);
    return end != text.c_str() && !*end && out >= 0 && out <= 1;
}

// Bit-level 8N1 transmitter driving uart_rx.
struct Serializer {
    int cpb;
    bool busy = false;
    uint16_t frame = 0;   // stop(1) data(8) start(1), LSB first
    int bit = 0, cnt = 0;

    void start(uint8_t b) {
        frame = static_cast<uint16_t>((1u << 9) | (static_cast<unsigned>(b) << 1));
        bit = 0;
        cnt = 0;
        busy = true;
    }
    int line() const { return busy ? (frame >> bit) & 1 : 1; }
    void step() {
        if (!busy) return;
        if (++cnt == cpb) {
            cnt = 0;
            if (++bit == 10) busy = false;
        }
    }
};

// Mid-bit sampler decoding uart_tx.
struct Deserializer {
    int cpb;
    bool busy = false;
    int cnt = 0, bit = 0;
    uint8_t shift = 0;

    // Feeds the line level after one clock; returns 1 with `out` set for a good byte, -1 for a framing error.
    int sample(int level, uint8_t& out) {
        if (!busy) {
            if (level == 0) {
                busy = true;
                cnt = 0;
                bit = -1;  // in the start bit
            }
            return 0;
        }
        ++cnt;
        int middle = (bit < 0) ? cpb / 2 : cpb;
        if (cnt < middle) return 0;
        cnt = 0;
        if (bit < 0) {
            if (level != 0) busy = false;  // glitch, not a start bit
            else bit = 0;
            return 0;
        }
        if (bit < 8) {
            shift = static_cast<uint8_t>((shift >> 1) | (level ? 0x80 : 0));
            ++bit;
            return 0;
        }
        busy = false;
        if (!level) return -1;
        out = shift;
        return 1;
    }
};

struct Board {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vsnn_top> top;
    int fd = -1;
    int cpb = 4;
    uint64_t idle_cycles = 1000000;
    Faults faults;
    Serializer ser{4};
    Deserializer des{4};
    std::deque<uint8_t> pending;   // host bytes waiting for the serializer
    std::string out;               // decoded bytes waiting to be written to fd
    std::string ctl_in;            // partial control line
    uint64_t cycles = 0, quiet = 0, rx = 0, tx = 0, sleeps = 0;
    uint64_t rx_dropped = 0, rx_corrupted = 0, tx_dropped = 0, tx_corrupted = 0;
    bool done = false;
    pid_t parent = 0;

    void clock(bool rst) {
        top->rst = rst;
        top->uart_rx = static_cast<uint8_t>(ser.line());
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
        ctx->timeInc(1);
        ++cycles;
    }

    void pulse_reset() {
        ser.busy = false;
        des.busy = false;
        for (int i = 0; i < RESET_CYCLES; ++i) clock(true);
        top->rst = 0;
        quiet = 0;
    }

    void flush_out() {
        while (!out.empty()) {
            ssize_t n = write(fd, out.data(), out.size());
            if (n > 0) {
                out.erase(0, static_cast<size_t>(n));
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else {
                return;  // EAGAIN: the host is not reading; keep the bytes (EIO: the hang-up is seen by poll)
            }
        }
    }

    // Reads what the host sent; returns false on hang-up.
    bool read_fd() {
        uint8_t buf[1024];
        while (pending.size() < READ_AHEAD) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n > 0) {
                for (ssize_t i = 0; i < n; ++i) {
                    uint8_t b = buf[i];
                    if (faults.apply(b, true, rx_dropped, rx_corrupted)) pending.push_back(b);
                }
                rx += static_cast<uint64_t>(n);
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
            return false;  // 0 or EIO: the slave side is gone
        }
        return true;
    }

    void discard_fd() {
        uint8_t buf[1024];
        while (read(fd, buf, sizeof buf) > 0) {
        }
    }

    void reply(const std::string& line) {
        std::string text = line + "\n";
        const char* p = text.data();
        size_t left = text.size();
        while (left) {
            ssize_t n = write(STDOUT_FILENO, p, left);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                done = true;
                return;
            }
            p += n;
            left -= static_cast<size_t>(n);
        }
    }

    bool set_faults(const std::vector<std::string>& words, size_t first) {
        if (words.size() != first + 9) return false;
        Faults f;
        char* end = nullptr;
        unsigned long long s = std::strtoull(words[first].c_str(), &end, 10);
        if (*end) return false;
        f.seed(s);
        if (!parse_prob(words[first + 1], f.drop_rx) || !parse_prob(words[first + 2], f.corrupt_rx) ||
            !parse_prob(words[first + 3], f.drop_tx) || !parse_prob(words[first + 4], f.corrupt_tx) ||
            !parse_list(words[first + 5], f.drop_rx_at) || !parse_list(words[first + 6], f.corrupt_rx_at) ||
            !parse_list(words[first + 7], f.drop_tx_at) || !parse_list(words[first + 8], f.corrupt_tx_at))
            return false;
        faults = f;
        return true;
    }

    void command(const std::string& line) {
        std::vector<std::string> words;
        std::stringstream ss(line);
        std::string w;
        while (ss >> w) words.push_back(w);
        if (words.empty()) return;
        if (words[0] == "reset" && words.size() == 1) {
            flush_out();  // bytes already decoded have reached the host on a real board too
            pending.clear();
            discard_fd();
            pulse_reset();
            reply("ok reset");
        } else if (words[0] == "faults") {
            reply(set_faults(words, 1) ? "ok faults" : "error faults: expected 'faults SEED P P P P LIST LIST LIST LIST'");
        } else if (words[0] == "stats" && words.size() == 1) {
            std::ostringstream os;
            os << "ok stats cycles=" << cycles << " rx=" << rx << " tx=" << tx << " rx_dropped=" << rx_dropped
               << " rx_corrupted=" << rx_corrupted << " tx_dropped=" << tx_dropped << " tx_corrupted=" << tx_corrupted
               << " sleeps=" << sleeps;
            reply(os.str());
        } else {
            reply("error unknown command: " + line);
        }
    }

    void read_control() {
        char buf[512];
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) {
            done = true;  // parent closed the pipe or died
            return;
        }
        ctl_in.append(buf, static_cast<size_t>(n));
        size_t pos;
        while (!done && (pos = ctl_in.find('\n')) != std::string::npos) {
            std::string line = ctl_in.substr(0, pos);
            ctl_in.erase(0, pos + 1);
            command(line);
        }
    }

    // One poll of fd and stdin; timeout_ms 0 while clocking.
    void service(int timeout_ms) {
        pollfd fds[2] = {{fd, static_cast<short>(pending.size() < READ_AHEAD ? POLLIN : 0), 0},
                         {STDIN_FILENO, POLLIN, 0}};
        if (!out.empty()) fds[0].events |= POLLOUT;
        int n = poll(fds, 2, timeout_ms);
        if (getppid() != parent) {
            done = true;  // the parent died: this process was adopted by init or a subreaper
            return;
        }
        if (n < 0) return;  // EINTR: g_stop is checked by the caller
        if (fds[1].revents) read_control();
        if (fds[0].revents & POLLIN) {
            if (!read_fd()) done = true;
        } else if (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
            done = true;
        }
        if (fds[0].revents & POLLOUT) flush_out();
    }

    int run() {
        pulse_reset();
        reply("ready");
        int since_poll = 0;
        while (!done && !g_stop) {
            bool busy = ser.busy || des.busy || !pending.empty();
            if (!busy && quiet >= idle_cycles) {
                flush_out();
                ++sleeps;
                service(SLEEP_MS);
                continue;
            }
            if (!ser.busy && !pending.empty()) {
                ser.start(pending.front());
                pending.pop_front();
            }
            clock(false);
            ser.step();
            uint8_t byte = 0;
            int got = des.sample(top->uart_tx, byte);
            if (got == 1) {
                ++tx;
                if (faults.apply(byte, false, tx_dropped, tx_corrupted)) out.push_back(static_cast<char>(byte));
            }
            quiet = (ser.busy || des.busy || top->uart_tx == 0) ? 0 : quiet + 1;
            // write a reply as soon as the line has been idle for two byte times (one write per frame, not per byte)
            if (!out.empty() && (quiet == static_cast<uint64_t>(20 * cpb) || out.size() >= 1024)) flush_out();
            if (++since_poll >= POLL_EVERY) {
                since_poll = 0;
                service(0);
            }
        }
        flush_out();
        top->final();
        return 0;
    }
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr, "board_sim: %s\n", why);
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    Board board;
    std::vector<std::string> fault_words = {"faults", "0", "0", "0", "0", "0", "-", "-", "-", "-"};
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (i + 1 >= argc) usage(("missing value after " + arg).c_str());
        std::string value = argv[++i];
        if (arg == "--fd") board.fd = std::atoi(value.c_str());
        else if (arg == "--cpb") board.cpb = std::atoi(value.c_str());
        else if (arg == "--idle-cycles") board.idle_cycles = std::strtoull(value.c_str(), nullptr, 10);
        else if (arg == "--seed") fault_words[1] = value;
        else if (arg == "--drop-rx") fault_words[2] = value;
        else if (arg == "--corrupt-rx") fault_words[3] = value;
        else if (arg == "--drop-tx") fault_words[4] = value;
        else if (arg == "--corrupt-tx") fault_words[5] = value;
        else if (arg == "--drop-rx-at") fault_words[6] = value;
        else if (arg == "--corrupt-rx-at") fault_words[7] = value;
        else if (arg == "--drop-tx-at") fault_words[8] = value;
        else if (arg == "--corrupt-tx-at") fault_words[9] = value;
        else usage(("unknown option " + arg).c_str());
    }
    if (board.fd < 0 || fcntl(board.fd, F_GETFD) < 0) usage("--fd must name an open file descriptor");
    if (board.cpb < 4) usage("--cpb must be >= 4 (uart_rx needs 4 clocks per bit)");
    if (!board.set_faults(fault_words, 1)) usage("bad fault settings (probabilities 0..1, comma separated indices)");
    board.ser.cpb = board.cpb;
    board.des.cpb = board.cpb;

    board.parent = getppid();  // a parent that died before this line is caught by EOF on stdin
    struct sigaction sa {};
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    fcntl(board.fd, F_SETFL, fcntl(board.fd, F_GETFL) | O_NONBLOCK);
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);

    board.ctx = std::make_unique<VerilatedContext>();
    board.ctx->commandArgs(1, argv);  // plusargs are not used; keep Verilator from parsing ours
    board.top = std::make_unique<Vsnn_top>(board.ctx.get());
    board.top->clk = 0;
    board.top->rst = 1;
    board.top->uart_rx = 1;
    return board.run();
}
