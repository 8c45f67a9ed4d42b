// Fast co-simulation harness for the exported ``cim_tile`` (see sim/fast/__init__.py and docs/cosim.md).
//
// A plain Verilator C++ main: no VPI, no cocotb. It reads a job file written by sim.fast (the command words of
// one or more cases, packed as the tile's ``cmd`` payload), drives them through the tile's valid/ready handshake
// cycle by cycle exactly as sim/driver.py, sim/monitor.py and sim/cocotb_tests/test_cim_tile.py do, and writes
// every result word, the final status register, the cycle counts and the wall time per case to an output file.
// The comparison with sw_model stays in Python (sim.checker.Checker).
//
//     cimfast <job.bin> <out.bin>
//
// File layouts (little-endian) are documented in sim/fast/__init__.py; bump FORMAT_VERSION on both sides together.

#include "Vcim_tile.h"
#include "verilated.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

// The tile's ports (sim.runner.expected_ports). Verilator escapes a double underscore in a name ("cmd__valid"
// becomes "cmd___05Fvalid"), hence the macros.
#define CMD_VALID cmd___05Fvalid
#define CMD_READY cmd___05Fready
#define CMD_PAYLOAD cmd___05Fpayload
#define RES_VALID res___05Fvalid
#define RES_READY res___05Fready
#define RES_PAYLOAD res___05Fpayload
#define STATUS status

namespace {

constexpr uint32_t FORMAT_VERSION = 1;
constexpr char JOB_MAGIC[8] = {'C', 'I', 'M', 'F', 'J', 'O', 'B', '\0'};
constexpr char OUT_MAGIC[8] = {'C', 'I', 'M', 'F', 'O', 'U', 'T', '\0'};

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "cimfast: %s\n", what);
    std::exit(2);
}

// ---- ports of any width: CData/SData/IData/QData (<= 64 bits) or VlWide<N> (> 64 bits) ----------------------
template <typename P>
constexpr size_t port_words(const P&) {
    using T = std::decay_t<P>;
    if constexpr (VlIsVlWide<T>::value) return T::Words;
    else return (sizeof(T) + 3) / 4;
}

template <typename P>
void put(P& port, const uint32_t* w, size_t n) {
    using T = std::decay_t<P>;
    if constexpr (VlIsVlWide<T>::value) {
        for (size_t k = 0; k < T::Words; ++k) port[k] = k < n ? w[k] : 0;
    } else {
        uint64_t v = n > 0 ? w[0] : 0;
        if (n > 1) v |= uint64_t(w[1]) << 32;
        port = static_cast<T>(v);
    }
}

template <typename P>
void get(const P& port, uint32_t* w, size_t n) {
    using T = std::decay_t<P>;
    if constexpr (VlIsVlWide<T>::value) {
        for (size_t k = 0; k < n; ++k) w[k] = k < T::Words ? port[k] : 0;
    } else {
        uint64_t v = static_cast<uint64_t>(port);
        for (size_t k = 0; k < n; ++k) w[k] = k < 2 ? uint32_t(v >> (32 * k)) : 0;
    }
}

template <typename P>
void clear(P& port) {
    using T = std::decay_t<P>;
    if constexpr (VlIsVlWide<T>::value) {
        for (size_t k = 0; k < T::Words; ++k) port[k] = 0;
    } else {
        port = 0;
    }
}

// ---- CPython's random.Random (MT19937 + random()), seeded with a state from random.Random.getstate() ---------
struct PyRandom {
    static constexpr int N = 624, M = 397;
    uint32_t mt[N];
    int index = N;

    void set_state(const uint32_t* s) {  // 624 words + the index, as getstate()[1]
        std::memcpy(mt, s, sizeof mt);
        index = static_cast<int>(s[N]);
    }
    uint32_t next32() {
        static const uint32_t mag01[2] = {0x0u, 0x9908b0dfu};
        if (index >= N) {
            int kk;
            uint32_t y;
            for (kk = 0; kk < N - M; kk++) {
                y = (mt[kk] & 0x80000000u) | (mt[kk + 1] & 0x7fffffffu);
                mt[kk] = mt[kk + M] ^ (y >> 1) ^ mag01[y & 1u];
            }
            for (; kk < N - 1; kk++) {
                y = (mt[kk] & 0x80000000u) | (mt[kk + 1] & 0x7fffffffu);
                mt[kk] = mt[kk + (M - N)] ^ (y >> 1) ^ mag01[y & 1u];
            }
            y = (mt[N - 1] & 0x80000000u) | (mt[0] & 0x7fffffffu);
            mt[N - 1] = mt[M - 1] ^ (y >> 1) ^ mag01[y & 1u];
            index = 0;
        }
        uint32_t y = mt[index++];
        y ^= (y >> 11);
        y ^= (y << 7) & 0x9d2c5680u;
        y ^= (y << 15) & 0xefc60000u;
        y ^= (y >> 18);
        return y;
    }
    double random() {
        uint32_t a = next32() >> 5, b = next32() >> 6;
        return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
    }
};

// ---- job and output files ---------------------------------------------------------------------------------------
struct Reader {
    FILE* f;
    template <typename T>
    T get() {
        T v;
        if (std::fread(&v, sizeof v, 1, f) != 1) die("job file truncated");
        return v;
    }
    void get_array(void* p, size_t bytes) {
        if (bytes && std::fread(p, 1, bytes, f) != bytes) die("job file truncated");
    }
};

struct Writer {
    FILE* f;
    template <typename T>
    void put(T v) {
        if (std::fwrite(&v, sizeof v, 1, f) != 1) die("cannot write the output file");
    }
    void put_array(const void* p, size_t bytes) {
        if (bytes && std::fwrite(p, 1, bytes, f) != bytes) die("cannot write the output file");
    }
};

struct Case {
    uint64_t n_words = 0;
    double gap = 0, backpressure = 0;
    uint64_t max_cycles = 0, stall_limit = 0;
    uint32_t reset_cycles = 2, drain_cycles = 16;
    uint32_t has_rng = 0;
    std::vector<uint32_t> drv_state, mon_state;
    std::vector<uint32_t> payload;  // n_words * payload_words
};

struct Outcome {
    uint64_t cycles = 0, sim_cycles = 0, driver_cycles = 0, sent = 0, stalled = 0;
    uint32_t timed_out = 0;
    std::vector<uint32_t> status;
    std::vector<uint32_t> results;  // n_results * result_words
    uint64_t wall_ns = 0;
};

// ---- the testbench ----------------------------------------------------------------------------------------------
class Bench {
  public:
    Bench(VerilatedContext* ctx, size_t pw, size_t sw, size_t rw)
        : top_(new Vcim_tile{ctx}), pw_(pw), sw_(sw), rw_(rw) {
        top_->clk = 0;
        top_->rst = 1;
        top_->CMD_VALID = 0;
        clear(top_->CMD_PAYLOAD);
        top_->RES_READY = 0;
        top_->eval();
        settled_ = true;
    }
    ~Bench() { top_->final(); }

    // Whether the ports are wide enough for the job's widths (a build of another configuration is not).
    void check_ports() const {
        if (pw_ > port_words(top_->CMD_PAYLOAD)) die("cmd__payload is narrower than the job's command payload");
        if (sw_ > port_words(top_->STATUS)) die("status is narrower than the job's status register");
        if (rw_ > port_words(top_->RES_PAYLOAD)) die("res__payload is narrower than the job's result words");
    }

    Outcome run(const Case& c) {
        Outcome o;
        auto t0 = std::chrono::steady_clock::now();
        PyRandom drv_rng, mon_rng;
        if (c.has_rng) {
            drv_rng.set_state(c.drv_state.data());
            mon_rng.set_state(c.mon_state.data());
        }
        // reset: rst high, driver and monitor idle (test_cim_tile.run_case)
        top_->rst = 1;
        top_->CMD_VALID = 0;
        clear(top_->CMD_PAYLOAD);
        top_->RES_READY = 0;
        settled_ = false;
        monitor_on_ = false;
        for (uint32_t k = 0; k < c.reset_cycles; ++k) edge();
        top_->rst = 0;
        settled_ = false;
        cycle_ = 0;
        // the monitor starts with the driver (ResultMonitor.run)
        monitor_on_ = true;
        mon_ready_ = false;
        bp_ = c.backpressure;
        mon_rng_ = &mon_rng;
        results_ = &o.results;

        // ---- CommandDriver.send ----
        const uint64_t n = c.n_words, max_cycles = c.max_cycles;
        uint64_t i = 0, stall_run = 0, stall_start = 0;
        bool fired = false, driving = false, stuck = false, stalling = false;
        for (;;) {
            edge();
            if (fired) ++i;
            uint64_t cycles = cycle_;
            if (i >= n || cycles > max_cycles) break;
            bool want = !(c.gap > 0 && drv_rng.random() < c.gap);
            if (want) put(top_->CMD_PAYLOAD, &c.payload[i * pw_], pw_);
            if (want != driving) {
                top_->CMD_VALID = want;
                driving = want;
            }
            settled_ = false;
            settle();
            bool ready = top_->CMD_READY;
            if (want && !ready) {
                if (c.gap > 0) {  // gapped: count the stall run
                    ++o.stalled;
                    ++stall_run;
                    if (c.stall_limit && stall_run >= c.stall_limit) {
                        stuck = true;
                        break;
                    }
                } else {  // the cocotb driver sleeps until ready rises or the budget runs out
                    if (!stalling) {
                        stalling = true;
                        stall_start = cycles;
                    }
                    int64_t budget = int64_t(max_cycles) - int64_t(cycles);
                    if (c.stall_limit)
                        budget = std::min<int64_t>(budget, int64_t(c.stall_limit) - int64_t(cycles - stall_start));
                    if (budget <= 0) {
                        o.stalled += cycles - stall_start;
                        stuck = true;
                        break;
                    }
                }
            } else if (want) {
                stall_run = 0;
                if (stalling) {
                    o.stalled += cycles - stall_start;
                    stalling = false;
                }
            }
            fired = want && ready;
        }
        if (stuck) edge();
        if (driving) {
            top_->CMD_VALID = 0;
            settled_ = false;
        }
        o.driver_cycles = cycle_;
        o.sent = i;
        const bool sent_all = i >= n;

        // ---- wait until the tile stops ----
        uint64_t cycles = cycle_;
        settle();
        sample_status();
        if (sent_all) {
            for (;;) {
                settle();
                sample_status();
                cycles = cycle_;
                int64_t budget = int64_t(max_cycles) - int64_t(cycles);
                if (c.stall_limit)
                    budget = std::min<int64_t>(budget, int64_t(c.stall_limit) - int64_t(cycles - o.driver_cycles));
                if (state_of(status_) != state_running_ || budget <= 0) break;
                edge();
            }
            edge();  // leave the read-only phase
        }
        o.status = status_;  // as sampled in the last read-only phase (before the edge that leaves it)
        o.timed_out = (!sent_all || state_of(status_) == state_running_) ? 1 : 0;
        o.cycles = cycles;

        // ---- drain: always ready, until the result stream was idle drain_cycles in a row ----
        bp_ = 0.0;
        uint64_t idle = 0, drained = 0;
        while (idle < c.drain_cycles && drained < max_cycles) {
            size_t before = o.results.size();
            edge();
            ++drained;
            idle = o.results.size() != before ? 0 : idle + 1;
        }
        monitor_on_ = false;
        o.sim_cycles = cycle_ + c.reset_cycles;
        o.wall_ns = uint64_t(
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
        return o;
    }

  private:
    // Settle the inputs written after the last rising edge (the cocotb ReadOnly phase).
    void settle() {
        if (!settled_) {
            top_->clk = 0;
            top_->eval();
            settled_ = true;
        }
    }
    void sample_status() {
        status_.assign(sw_, 0);
        get(top_->STATUS, status_.data(), sw_);
    }
    // The state field of a status value (at most 32 bits wide, anywhere in the register).
    uint32_t state_of(const std::vector<uint32_t>& s) const {
        uint64_t v = 0;
        size_t k = state_offset_ / 32, sh = state_offset_ % 32;
        if (k < s.size()) v = s[k];
        if (k + 1 < s.size()) v |= uint64_t(s[k + 1]) << 32;
        return uint32_t((v >> sh) & ((uint64_t(1) << state_width_) - 1));
    }
    // One rising edge: the monitor samples the settled res handshake, the clock rises, the monitor acts
    // (ResultMonitor.run: append the word that fired, draw back-pressure, drive ready).
    void edge() {
        settle();
        if (monitor_on_ && mon_ready_ && top_->RES_VALID) {
            size_t k = results_->size();
            results_->resize(k + rw_);
            get(top_->RES_PAYLOAD, results_->data() + k, rw_);
        }
        top_->clk = 1;
        top_->eval();
        ++cycle_;
        settled_ = false;
        if (monitor_on_) {
            bool want = !(bp_ > 0 && mon_rng_->random() < bp_);
            if (want != mon_ready_) {
                top_->RES_READY = want;
                mon_ready_ = want;
            }
        }
    }

    std::unique_ptr<Vcim_tile> top_;
    size_t pw_, sw_, rw_;
    bool settled_ = false;
    uint64_t cycle_ = 0;
    bool monitor_on_ = false, mon_ready_ = false;
    double bp_ = 0;
    PyRandom* mon_rng_ = nullptr;
    std::vector<uint32_t>* results_ = nullptr;
    std::vector<uint32_t> status_;

  public:
    uint32_t state_offset_ = 0, state_width_ = 1, state_running_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) die("usage: cimfast <job.bin> <out.bin>");
    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(1, argv);  // keep Verilator's +verilator+ options away from the file names

    FILE* fin = std::fopen(argv[1], "rb");
    if (!fin) die("cannot open the job file");
    Reader in{fin};
    char magic[8];
    in.get_array(magic, 8);
    if (std::memcmp(magic, JOB_MAGIC, 8) != 0) die("not a job file");
    if (in.get<uint32_t>() != FORMAT_VERSION) die("job file version mismatch");
    const uint32_t payload_bits = in.get<uint32_t>(), status_bits = in.get<uint32_t>();
    const uint32_t result_bits = in.get<uint32_t>(), state_offset = in.get<uint32_t>();
    const uint32_t state_width = in.get<uint32_t>(), state_running = in.get<uint32_t>();
    if (state_width < 1 || state_width > 32 || state_offset + state_width > status_bits) die("bad state field");
    const uint32_t n_cases = in.get<uint32_t>();
    const size_t pw = (payload_bits + 31) / 32, sw = (status_bits + 31) / 32, rw = (result_bits + 31) / 32;


    std::vector<Case> cases(n_cases);
    for (auto& c : cases) {
        c.n_words = in.get<uint64_t>();
        c.gap = in.get<double>();
        c.backpressure = in.get<double>();
        c.max_cycles = in.get<uint64_t>();
        c.stall_limit = in.get<uint64_t>();
        c.reset_cycles = in.get<uint32_t>();
        c.drain_cycles = in.get<uint32_t>();
        c.has_rng = in.get<uint32_t>();
        if (c.has_rng) {
            c.drv_state.resize(625);
            c.mon_state.resize(625);
            in.get_array(c.drv_state.data(), 625 * 4);
            in.get_array(c.mon_state.data(), 625 * 4);
        }
        c.payload.resize(c.n_words * pw);
        in.get_array(c.payload.data(), c.payload.size() * 4);
    }
    std::fclose(fin);

    FILE* fout = std::fopen(argv[2], "wb");
    if (!fout) die("cannot open the output file");
    Writer out{fout};
    out.put_array(OUT_MAGIC, 8);
    out.put<uint32_t>(FORMAT_VERSION);
    out.put<uint32_t>(n_cases);
    std::fflush(fout);

    Bench bench(ctx.get(), pw, sw, rw);
    bench.check_ports();
    bench.state_offset_ = state_offset;
    bench.state_width_ = state_width;
    bench.state_running_ = state_running;
    for (const auto& c : cases) {
        Outcome o = bench.run(c);
        out.put<uint64_t>(o.cycles);
        out.put<uint64_t>(o.sim_cycles);
        out.put<uint64_t>(o.driver_cycles);
        out.put<uint64_t>(o.sent);
        out.put<uint64_t>(o.stalled);
        out.put<uint64_t>(o.wall_ns);
        out.put<uint32_t>(o.timed_out);
        out.put_array(o.status.data(), sw * 4);
        out.put<uint64_t>(o.results.size() / rw);
        out.put_array(o.results.data(), o.results.size() * 4);
        std::fflush(fout);  // a crash later leaves the cases done so far readable
    }
    std::fclose(fout);
    return 0;
}
