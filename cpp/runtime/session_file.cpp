#include "runtime/session_file.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include "base/error.h"
#include "model/model.h"
#include "runtime/session_state.h"

namespace lazyllm_edge {

int layer_kv_width(const SessionFileShape& shape, int layer) {
    return shape.layer_kv_dim.empty() ? shape.kv_dim : shape.layer_kv_dim[static_cast<size_t>(layer)];
}

int aux_row_width(const SessionFileShape& shape) { return shape.aux_width > 0 ? shape.aux_width : shape.d_model; }

int64_t kv_width(const SessionFileShape& shape) {
    int64_t width = 0;
    for (int l = 0; l < shape.n_layer; ++l) width += layer_kv_width(shape, l);
    return width;
}
namespace {

constexpr char kMagic[8] = {'L', 'Z', 'E', 'D', 'G', 'E', 'S', 'S'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kKvFp16 = 1;
constexpr size_t kHeaderBytes = 8 + 4 + 32 + 4 * 4 + 4 + 4 + 4 + 8;
constexpr size_t kTrailerBytes = 8;

[[noreturn]] void fail(const std::string& message) { throw_error(ErrorCode::state_file, message); }

// 64-bit FNV-1a over 8-byte little-endian words (the tail zero-padded, the length mixed in last): it catches
// flipped, lost and shuffled bytes at memory speed.
class Checksum64 {
public:
    void update(const void* data, size_t size) {
        const uint8_t* p = static_cast<const uint8_t*>(data);
        total_ += size;
        while (size > 0 && pending_ > 0) {
            word_[pending_++] = *p++, --size;
            if (pending_ == 8) mix_pending();
        }
        for (; size >= 8; p += 8, size -= 8) {
            uint64_t w;
            std::memcpy(&w, p, 8);
            mix(w);
        }
        while (size > 0) word_[pending_++] = *p++, --size;
    }
    uint64_t finish() {
        if (pending_ > 0) {
            std::fill(word_ + pending_, word_ + 8, 0);
            mix_pending();
        }
        mix(total_);
        return h_;
    }

private:
    void mix(uint64_t w) { h_ = (h_ ^ w) * 0x100000001b3ull; }
    void mix_pending() {
        uint64_t w;
        std::memcpy(&w, word_, 8);
        mix(w);
        pending_ = 0;
    }
    uint64_t h_ = 0xcbf29ce484222325ull;
    uint64_t total_ = 0;
    uint8_t word_[8] = {};
    int pending_ = 0;
};

// A sink that checksums what passes through.
class ChecksummedSink {
public:
    explicit ChecksummedSink(ByteSink& out) : out_(out) {}
    void write(const void* data, size_t size) {
        sum_.update(data, size);
        out_.write(data, size);
    }
    template <class T>
    void put(T value) { write(&value, sizeof(T)); }
    uint64_t finish() { return sum_.finish(); }

private:
    ByteSink& out_;
    Checksum64 sum_;
};

size_t widest_layer(const SessionFileShape& shape) {
    size_t widest = 0;
    for (int l = 0; l < shape.n_layer; ++l) widest = std::max(widest, static_cast<size_t>(layer_kv_width(shape, l)));
    return widest;
}

// Tokens with KV at `layer` (frontier > layer), and tokens with an aux row (pruned: frontier < n_layer).
int64_t count_with_kv(const int32_t* frontier, int n, int layer) {
    return std::count_if(frontier, frontier + n, [&](int32_t f) { return f > layer; });
}
int64_t count_pruned(const int32_t* frontier, int n, int n_layer) {
    return std::count_if(frontier, frontier + n, [&](int32_t f) { return f < n_layer; });
}

uint64_t payload_bytes(const SessionFileShape& shape, const int32_t* frontier, int n) {
    uint64_t bytes = 2 * sizeof(int32_t) * static_cast<uint64_t>(n);
    for (int l = 0; l < shape.n_layer; ++l)
        if (layer_kv_width(shape, l) > 0)
            bytes += 2 * sizeof(uint16_t) * static_cast<uint64_t>(count_with_kv(frontier, n, l)) * layer_kv_width(shape, l);
    bytes += sizeof(float) * static_cast<uint64_t>(count_pruned(frontier, n, shape.n_layer)) * aux_row_width(shape);
    return bytes;
}

// Reads fields in order, each checked against the end of the data.
class Reader {
public:
    Reader(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
    const uint8_t* take(size_t n, const char* what) {
        if (static_cast<size_t>(end_ - p_) < n) fail(std::string("the file is truncated (in ") + what + ")");
        const uint8_t* at = p_;
        p_ += n;
        return at;
    }
    template <class T>
    T get(const char* what) {
        T v;
        std::memcpy(&v, take(sizeof(T), what), sizeof(T));
        return v;
    }
    const uint8_t* position() const { return p_; }

private:
    const uint8_t* p_;
    const uint8_t* end_;
};

std::string short_digest(const Sha256Digest& d) { return hex_digest(d).substr(0, 16); }

void check_shape_field(const char* name, int32_t got, int want) {
    if (got != want)
        fail(std::string("the file was saved for another model shape: ") + name + " " + std::to_string(got) +
             ", this model has " + std::to_string(want));
}

// A file sink: errors name the path.
class FileSink final : public ByteSink {
public:
    FileSink(std::FILE* f, const std::string& path) : f_(f), path_(path) {}
    void write(const void* data, size_t size) override {
        if (size > 0 && std::fwrite(data, 1, size, f_) != size)
            fail("cannot write '" + path_ + "': " + std::strerror(errno));
    }

private:
    std::FILE* f_;
    const std::string& path_;
};

}  // namespace

void write_session_file(const SessionFileShape& shape, const SessionContents& c, ByteSink& out) {
    ChecksummedSink sink(out);
    // header
    sink.write(kMagic, sizeof(kMagic));
    sink.put<uint32_t>(kVersion);
    sink.write(shape.model_sha256.data(), shape.model_sha256.size());
    for (int32_t v : {shape.n_layer, shape.n_vocab, shape.d_model, static_cast<int32_t>(kv_width(shape))})
        sink.put<int32_t>(v);
    sink.put<uint32_t>(kKvFp16);
    sink.put<uint32_t>(shape.rope_factors);
    sink.put<int32_t>(c.n);
    sink.put<uint64_t>(payload_bytes(shape, c.frontier, c.n));
    // payload
    sink.write(c.tokens, sizeof(int32_t) * c.n);
    sink.write(c.frontier, sizeof(int32_t) * c.n);
    const size_t d = static_cast<size_t>(aux_row_width(shape));
    std::vector<uint16_t> k(c.n * widest_layer(shape)), v(c.n * widest_layer(shape));  // (n, kv_dim(l)) staging
    for (int l = 0; l < shape.n_layer; ++l) {
        const size_t kvd = static_cast<size_t>(layer_kv_width(shape, l));
        if (kvd == 0 || count_with_kv(c.frontier, c.n, l) == 0) continue;
        c.read_kv_rows(l, k.data(), v.data());
        for (const std::vector<uint16_t>* rows : {&k, &v})
            for (int p = 0; p < c.n; ++p)
                if (c.frontier[p] > l) sink.write(rows->data() + p * kvd, sizeof(uint16_t) * kvd);
    }
    if (count_pruned(c.frontier, c.n, shape.n_layer) > 0) {
        std::vector<float> aux(c.n * d);  // (n, aux row width)
        c.read_aux_rows(aux.data());
        for (int p = 0; p < c.n; ++p)
            if (c.frontier[p] < shape.n_layer) sink.write(aux.data() + p * d, sizeof(float) * d);
    }
    // trailer
    const uint64_t checksum = sink.finish();
    out.write(&checksum, sizeof(checksum));
}

SessionImage parse_session_file(const uint8_t* data, size_t size, const SessionFileShape& expected) {
    if (size < kHeaderBytes + kTrailerBytes)
        fail("the file is truncated or not a saved session (" + std::to_string(size) + " bytes; a saved session has at least " +
             std::to_string(kHeaderBytes + kTrailerBytes) + ")");
    Reader r(data, size);
    if (std::memcmp(r.take(sizeof(kMagic), "the magic"), kMagic, sizeof(kMagic)) != 0)
        fail("not a lazyllm_edge saved session (bad magic)");
    const uint32_t version = r.get<uint32_t>("the version");
    if (version != kVersion)
        fail("saved-session format version " + std::to_string(version) + " is not supported (this library reads " +
             std::to_string(kVersion) + ")");
    Sha256Digest sha;
    std::memcpy(sha.data(), r.take(sha.size(), "the model digest"), sha.size());
    if (sha != expected.model_sha256)
        fail("the file was saved with another model (model sha256 " + short_digest(sha) + "..., this model " +
             short_digest(expected.model_sha256) + "...)");
    check_shape_field("n_layer", r.get<int32_t>("the shape"), expected.n_layer);
    check_shape_field("n_vocab", r.get<int32_t>("the shape"), expected.n_vocab);
    check_shape_field("d_model", r.get<int32_t>("the shape"), expected.d_model);
    check_shape_field("kv_width", r.get<int32_t>("the shape"), static_cast<int32_t>(kv_width(expected)));
    if (r.get<uint32_t>("the KV type") != kKvFp16) fail("the file's KV cache type is not fp16");
    if (r.get<uint32_t>("the RoPE factors") != expected.rope_factors)
        fail(expected.rope_factors ? "the file's keys were rotated with the model's short RoPE factors, this session's n_ctx "
                                     "uses the long ones: load it into a session with n_ctx at most the model's original context"
                                   : "the file's keys were rotated with other RoPE factors than this session's (the long LongRoPE "
                                     "factors of a larger n_ctx, or a corrupted header)");
    const int32_t n = r.get<int32_t>("the token count");
    if (n < 0) fail("the file's token count " + std::to_string(n) + " is negative");
    if (n > expected.n_ctx)
        fail("the file holds " + std::to_string(n) + " tokens, more than this session's n_ctx " + std::to_string(expected.n_ctx));
    const uint64_t declared = r.get<uint64_t>("the payload size");
    const uint64_t present = size - kHeaderBytes - kTrailerBytes;
    if (declared != present)
        fail(declared > present ? "the file is truncated (" + std::to_string(present) + " of " + std::to_string(declared) +
                                      " payload bytes)"
                                : "the file has " + std::to_string(present - declared) + " bytes more than its header says");
    SessionImage image;
    image.tokens.resize(n);
    image.frontier.resize(n);
    const uint8_t* tokens = r.take(sizeof(int32_t) * n, "the tokens");
    const uint8_t* frontier = r.take(sizeof(int32_t) * n, "the frontier");
    if (n > 0) {  // (an empty session: no vector storage to copy into)
        std::memcpy(image.tokens.data(), tokens, sizeof(int32_t) * n);
        std::memcpy(image.frontier.data(), frontier, sizeof(int32_t) * n);
    }
    for (int p = 0; p < n; ++p) {
        if (image.tokens[p] < 0 || image.tokens[p] >= expected.n_vocab)
            fail("token " + std::to_string(image.tokens[p]) + " at position " + std::to_string(p) + " is out of range");
        if (image.frontier[p] < 1 || image.frontier[p] > expected.n_layer)
            fail("position " + std::to_string(p) + " has KV at " + std::to_string(image.frontier[p]) + " layers, not in [1, " +
                 std::to_string(expected.n_layer) + "]");
    }
    if (payload_bytes(expected, image.frontier.data(), n) != declared)
        fail("the file's payload size does not match its tokens' layers (corrupted)");
    image.kv = r.position();
    const uint64_t aux_bytes = sizeof(float) * static_cast<uint64_t>(count_pruned(image.frontier.data(), n, expected.n_layer)) *
                               aux_row_width(expected);
    r.take(declared - 2 * sizeof(int32_t) * n - aux_bytes, "the KV rows");
    image.aux = r.take(aux_bytes, "the aux rows");
    uint64_t stored;
    std::memcpy(&stored, data + size - kTrailerBytes, sizeof(stored));
    Checksum64 sum;
    sum.update(data, size - kTrailerBytes);
    if (sum.finish() != stored) fail("the file is corrupted (checksum mismatch)");
    return image;
}

SessionFileShape session_file_shape(const SessionImpl& s) {
    SessionFileShape shape;
    shape.model_sha256 = model_file_sha256(*s.m);
    shape.n_layer = s.hp->n_layer;
    shape.n_vocab = s.hp->n_vocab;
    shape.d_model = s.hp->d_model;
    shape.aux_width = s.backend->aux_row_width();
    shape.kv_dim = s.hp->kv_dim();
    for (int l = 0; l < s.hp->n_layer; ++l)
        shape.layer_kv_dim.push_back(s.hp->computes_kv(l) ? s.hp->shape(l).kv_dim() : 0);
    // (phi3 rotates keys with factors chosen by the session's n_ctx: a cache is only valid under the same ones)
    shape.rope_factors = s.m->rope_factors_long && rope_frequency_factors(*s.m, s.n_ctx) == s.m->rope_factors_long;
    shape.n_ctx = s.n_ctx;
    return shape;
}

void save_session_file(SessionImpl& s, const std::string& path) {
    if (path.empty()) fail("the path is empty");
    const SessionFileShape shape = session_file_shape(s);
    SessionContents c;
    c.tokens = s.tokens.data();
    c.frontier = s.frontier.data();
    c.n = static_cast<int>(s.tokens.size());
    c.read_kv_rows = [&](int layer, uint16_t* k, uint16_t* v) { s.backend->read_kv_rows(layer, c.n, k, v); };
    c.read_aux_rows = [&](float* aux) { s.backend->read_aux_rows(c.n, aux); };
    // a temporary file renamed over the old one: a crash or a full disk never leaves a half-written file there
    const std::string tmp = path + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) fail("cannot create '" + tmp + "': " + std::strerror(errno));
    try {
        FileSink sink(f, tmp);
        write_session_file(shape, c, sink);
        if (std::fflush(f) != 0 || fsync(fileno(f)) != 0) fail("cannot write '" + tmp + "': " + std::strerror(errno));
    } catch (...) {
        std::fclose(f);
        std::remove(tmp.c_str());
        throw;
    }
    if (std::fclose(f) != 0) {
        std::remove(tmp.c_str());
        fail("cannot write '" + tmp + "': " + std::strerror(errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        std::remove(tmp.c_str());
        fail("cannot rename '" + tmp + "' to '" + path + "': " + why);
    }
}

namespace {

// The file's bytes, refused before reading when larger than any session of this shape could be.
std::vector<uint8_t> read_session_bytes(const std::string& path, const SessionFileShape& shape) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail("cannot open '" + path + "': " + std::strerror(errno));
    std::vector<uint8_t> bytes;
    try {
        if (std::fseek(f, 0, SEEK_END) != 0) fail("cannot read '" + path + "': " + std::strerror(errno));
        const long size = std::ftell(f);
        if (size < 0) fail("cannot read '" + path + "': " + std::strerror(errno));
        // at most: n_ctx tokens, each with KV at every layer and an aux row
        const uint64_t per_token = 2 * sizeof(int32_t) + 2 * sizeof(uint16_t) * static_cast<uint64_t>(kv_width(shape)) +
                                   sizeof(float) * static_cast<uint64_t>(aux_row_width(shape));
        const uint64_t most = kHeaderBytes + kTrailerBytes + per_token * static_cast<uint64_t>(shape.n_ctx);
        if (static_cast<uint64_t>(size) > most)
            fail("'" + path + "' (" + std::to_string(size) + " bytes) is larger than any saved session of this model and n_ctx");
        bytes.resize(static_cast<size_t>(size));
        std::rewind(f);
        if (size > 0 && std::fread(bytes.data(), 1, bytes.size(), f) != bytes.size())
            fail("cannot read '" + path + "': " + std::strerror(errno));
    } catch (...) {
        std::fclose(f);
        throw;
    }
    std::fclose(f);
    return bytes;
}

// Puts a validated image into the session: caches first, then the context and frontier.
void apply_image(SessionImpl& s, const SessionImage& image) {
    const int n = static_cast<int>(image.tokens.size());
    const SessionFileShape shape = session_file_shape(s);
    const size_t d = static_cast<size_t>(aux_row_width(shape));
    const uint8_t* rows = image.kv;
    // (n, kv_dim(l)) one layer's rows [0, n); zeros where no KV
    std::vector<uint16_t> k(n * widest_layer(shape), 0), v(n * widest_layer(shape), 0);
    for (int l = 0; l < s.hp->n_layer; ++l) {
        const size_t kvd = static_cast<size_t>(layer_kv_width(shape, l));
        if (kvd == 0 || count_with_kv(image.frontier.data(), n, l) == 0) continue;
        for (std::vector<uint16_t>* dst : {&k, &v})
            for (int p = 0; p < n; ++p) {
                if (image.frontier[p] <= l) continue;
                std::memcpy(dst->data() + p * kvd, rows, sizeof(uint16_t) * kvd);
                rows += sizeof(uint16_t) * kvd;
            }
        s.backend->write_kv_rows(l, n, k.data(), v.data());
    }
    if (count_pruned(image.frontier.data(), n, s.hp->n_layer) > 0) {
        std::vector<float> aux(n * d, 0.0f);  // (n, aux row width)
        const uint8_t* src = image.aux;
        for (int p = 0; p < n; ++p) {
            if (image.frontier[p] >= s.hp->n_layer) continue;
            std::memcpy(aux.data() + p * d, src, sizeof(float) * d);
            src += sizeof(float) * d;
        }
        s.backend->write_aux_rows(n, aux.data());
    }
    s.tokens.assign(image.tokens.begin(), image.tokens.end());
    std::fill(s.frontier.begin(), s.frontier.end(), 0);
    std::copy(image.frontier.begin(), image.frontier.end(), s.frontier.begin());
}

}  // namespace

void load_session_file(SessionImpl& s, const std::string& path) {
    if (path.empty()) fail("the path is empty");
    const SessionFileShape shape = session_file_shape(s);
    const std::vector<uint8_t> bytes = read_session_bytes(path, shape);
    const SessionImage image = parse_session_file(bytes.data(), bytes.size(), shape);
    // valid: from here on the session changes
    try {
        apply_image(s, image);
        truncate_context(s, s.tokens.size());  // the backend learns the frontier; the per-layer counts follow it
    } catch (...) {
        // a device failed half-way: an empty session rather than a mixed one
        try {
            std::fill(s.frontier.begin(), s.frontier.end(), 0);
            truncate_context(s, 0);
        } catch (...) {
        }
        throw;
    }
    // the loaded tokens count as computed with the session's current settings; the stats start over
    const std::vector<int> layer_kv_tokens = s.stats.layer_kv_tokens;
    s.stats = SessionStats();
    s.stats.layer_kv_tokens = layer_kv_tokens;
    s.cache_lazy = s.prune_plan->config;
    s.cache_numerics = s.numerics;
    s.cache_mixed = false;
    s.prompt_pending = false;
    s.importance_log.clear();
    s.last_logits = nullptr;
}

}  // namespace lazyllm_edge
