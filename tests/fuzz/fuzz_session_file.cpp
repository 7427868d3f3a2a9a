// libFuzzer target: the saved-session reader (runtime/session_file.cpp). Each input is tried twice:
//  - as a file's bytes: parse_session_file must accept it or throw Error(state_file), never crash or misread;
//  - as the contents of a session (tokens, layer frontiers, cache rows drawn from the bytes), written with
//    write_session_file: the file must parse back to the same tokens, frontiers and rows, and the same file with
//    one byte changed (where and how drawn from the input) or cut short must be refused or parse to a valid image.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <vector>

#include "base/error.h"
#include "runtime/session_file.h"

using namespace lazyllm_edge;

namespace {

SessionFileShape fuzz_shape() {
    SessionFileShape shape;
    shape.model_sha256.fill(0xab);
    shape.n_layer = 3;
    shape.n_vocab = 50;
    shape.d_model = 4;
    shape.kv_dim = 2;
    shape.n_ctx = 40;
    return shape;
}

class MemorySink final : public ByteSink {
public:
    void write(const void* data, size_t size) override {
        const uint8_t* p = static_cast<const uint8_t*>(data);
        bytes.insert(bytes.end(), p, p + size);
    }
    std::vector<uint8_t> bytes;
};

// Reads bytes in order, zeros once the input is used up.
struct Draw {
    const uint8_t* data;
    size_t size;
    size_t at = 0;
    uint8_t next() { return at < size ? data[at++] : 0; }
};

void parse_or_refuse(const uint8_t* data, size_t size, const SessionFileShape& shape) {
    try {
        const SessionImage image = parse_session_file(data, size, shape);
        for (size_t p = 0; p < image.tokens.size(); ++p)
            if (image.tokens[p] < 0 || image.tokens[p] >= shape.n_vocab || image.frontier[p] < 1 ||
                image.frontier[p] > shape.n_layer)
                std::abort();  // accepted something it promised to refuse
    } catch (const Error& e) {
        if (e.code() != ErrorCode::state_file) std::abort();
    }
}

void round_trip(const uint8_t* data, size_t size, const SessionFileShape& shape) {
    Draw draw{data, size};
    const int n = draw.next() % (shape.n_ctx + 1);
    std::vector<int32_t> tokens(n), frontier(n);
    for (int p = 0; p < n; ++p) {
        tokens[p] = draw.next() % shape.n_vocab;
        frontier[p] = 1 + draw.next() % shape.n_layer;
    }
    // cache rows [0, n) as the backends hand them over: distinct values per (layer, row, column)
    auto kv_value = [](int layer, int row, int col, int which) { return static_cast<uint16_t>(layer * 4099 + row * 31 + col * 7 + which); };
    SessionContents c;
    c.tokens = tokens.data();
    c.frontier = frontier.data();
    c.n = n;
    c.read_kv_rows = [&](int layer, uint16_t* k, uint16_t* v) {
        for (int r = 0; r < n; ++r)
            for (int j = 0; j < shape.kv_dim; ++j) {
                k[r * shape.kv_dim + j] = kv_value(layer, r, j, 0);
                v[r * shape.kv_dim + j] = kv_value(layer, r, j, 1);
            }
    };
    c.read_aux_rows = [&](float* aux) {
        for (int i = 0; i < n * shape.d_model; ++i) aux[i] = 0.5f * i;
    };
    MemorySink sink;
    write_session_file(shape, c, sink);
    const SessionImage image = parse_session_file(sink.bytes.data(), sink.bytes.size(), shape);
    if (image.tokens != tokens || image.frontier != frontier) std::abort();
    // the first K row of layer 0 (every token has KV there) is the first token's
    if (n > 0) {
        uint16_t k0;
        std::memcpy(&k0, image.kv, sizeof(k0));
        if (k0 != kv_value(0, 0, 0, 0)) std::abort();
    }
    // one byte changed, or the file cut short
    std::vector<uint8_t> bad = sink.bytes;
    const size_t where = (size_t(draw.next()) << 8 | draw.next()) % bad.size();
    const uint8_t flip = draw.next() | 1;
    bad[where] ^= flip;
    parse_or_refuse(bad.data(), bad.size(), shape);
    parse_or_refuse(sink.bytes.data(), where, shape);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const SessionFileShape shape = fuzz_shape();
    parse_or_refuse(data, size, shape);
    round_trip(data, size, shape);
    return 0;
}
