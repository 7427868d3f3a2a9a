#include "gguf/gguf_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "base/error.h"

namespace lazyllm_edge {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxStringLength = 1ull << 30;
constexpr int kMaxDims = 4;

[[noreturn]] void fail(const std::string& message) { throw_error(ErrorCode::model_load, message); }

size_t scalar_size(GgufValueType t) {
    switch (t) {
        case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::BOOL: return 1;
        case GgufValueType::UINT16: case GgufValueType::INT16: return 2;
        case GgufValueType::UINT32: case GgufValueType::INT32: case GgufValueType::FLOAT32: return 4;
        case GgufValueType::UINT64: case GgufValueType::INT64: case GgufValueType::FLOAT64: return 8;
        default: return 0;
    }
}

// Bounds-checked little-endian cursor over the file bytes.
class Cursor {
public:
    Cursor(const uint8_t* base, size_t size) : base_(base), size_(size) {}
    size_t position() const { return pos_; }
    size_t remaining() const { return size_ - pos_; }

    const uint8_t* take(uint64_t n, const char* what) {
        if (n > remaining()) fail(std::string("GGUF file is truncated while reading ") + what);
        const uint8_t* p = base_ + pos_;
        pos_ += static_cast<size_t>(n);
        return p;
    }
    template <class T>
    T read(const char* what) {
        T v;
        std::memcpy(&v, take(sizeof(T), what), sizeof(T));
        return v;
    }
    std::string read_string(const char* what) {
        uint64_t n = read<uint64_t>(what);
        if (n > kMaxStringLength || n > remaining()) fail(std::string("GGUF string length out of range in ") + what);
        const uint8_t* p = take(n, what);
        return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    }

private:
    const uint8_t* base_;
    size_t size_;
    size_t pos_ = 0;
};

GgufValueType read_value_type(Cursor& c, const std::string& key) {
    uint32_t t = c.read<uint32_t>("a value type");
    if (t > static_cast<uint32_t>(GgufValueType::FLOAT64))
        fail("GGUF metadata '" + key + "' has unknown value type " + std::to_string(t));
    return static_cast<GgufValueType>(t);
}

void read_scalar(Cursor& c, GgufValueType t, GgufValue& v) {
    const char* what = "a metadata value";
    switch (t) {
        case GgufValueType::UINT8: v.u = c.read<uint8_t>(what); v.i = static_cast<int64_t>(v.u); break;
        case GgufValueType::BOOL: v.u = c.read<uint8_t>(what) != 0; v.i = static_cast<int64_t>(v.u); break;
        case GgufValueType::INT8: v.i = c.read<int8_t>(what); break;
        case GgufValueType::UINT16: v.u = c.read<uint16_t>(what); v.i = static_cast<int64_t>(v.u); break;
        case GgufValueType::INT16: v.i = c.read<int16_t>(what); break;
        case GgufValueType::UINT32: v.u = c.read<uint32_t>(what); v.i = static_cast<int64_t>(v.u); break;
        case GgufValueType::INT32: v.i = c.read<int32_t>(what); break;
        case GgufValueType::UINT64: v.u = c.read<uint64_t>(what); v.i = static_cast<int64_t>(v.u); break;
        case GgufValueType::INT64: v.i = c.read<int64_t>(what); break;
        case GgufValueType::FLOAT32: v.f = c.read<float>(what); break;
        case GgufValueType::FLOAT64: v.f = c.read<double>(what); break;
        default: break;
    }
    if (t == GgufValueType::INT8 || t == GgufValueType::INT16 || t == GgufValueType::INT32 || t == GgufValueType::INT64)
        v.u = static_cast<uint64_t>(v.i);
}

// Reads an array body (type already known to be ARRAY); depth limits nesting.
void read_array(Cursor& c, GgufValue& v, const std::string& key, int depth) {
    if (depth > 4) fail("GGUF metadata '" + key + "' nests arrays too deeply");
    v.array_type = read_value_type(c, key);
    v.array_length = c.read<uint64_t>("an array length");
    if (v.array_type == GgufValueType::STRING) {
        // Each string needs at least its 8-byte length: reject counts the file cannot hold.
        if (v.array_length > c.remaining() / 8) fail("GGUF metadata '" + key + "' array length exceeds the file");
        v.array_strings.reserve(static_cast<size_t>(v.array_length));
        for (uint64_t k = 0; k < v.array_length; ++k) v.array_strings.push_back(c.read_string(key.c_str()));
    } else if (v.array_type == GgufValueType::ARRAY) {
        if (v.array_length > c.remaining() / 12) fail("GGUF metadata '" + key + "' array length exceeds the file");
        for (uint64_t k = 0; k < v.array_length; ++k) {
            GgufValue nested;  // each element is itself (element type, length, elements)
            read_array(c, nested, key, depth + 1);
        }
    } else {
        size_t elem = scalar_size(v.array_type);
        if (elem == 0) fail("GGUF metadata '" + key + "' has a bad array element type");
        if (v.array_length > c.remaining() / elem) fail("GGUF metadata '" + key + "' array length exceeds the file");
        v.array_data = c.take(v.array_length * elem, key.c_str());
    }
}

template <class T>
T load_le(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

double array_number(const GgufValue& v, uint64_t k) {
    const uint8_t* p = v.array_data + k * scalar_size(v.array_type);
    switch (v.array_type) {
        case GgufValueType::UINT8: case GgufValueType::BOOL: return load_le<uint8_t>(p);
        case GgufValueType::INT8: return load_le<int8_t>(p);
        case GgufValueType::UINT16: return load_le<uint16_t>(p);
        case GgufValueType::INT16: return load_le<int16_t>(p);
        case GgufValueType::UINT32: return load_le<uint32_t>(p);
        case GgufValueType::INT32: return load_le<int32_t>(p);
        case GgufValueType::UINT64: return static_cast<double>(load_le<uint64_t>(p));
        case GgufValueType::INT64: return static_cast<double>(load_le<int64_t>(p));
        case GgufValueType::FLOAT32: return load_le<float>(p);
        case GgufValueType::FLOAT64: return load_le<double>(p);
        default: return 0.0;
    }
}

}  // namespace

const char* gguf_value_type_name(GgufValueType t) {
    static const char* names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                  "bool", "string", "array", "uint64", "int64", "float64"};
    auto i = static_cast<uint32_t>(t);
    return i < 13 ? names[i] : "unknown";
}

bool GgufValue::is_integer() const {
    switch (type) {
        case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::UINT16: case GgufValueType::INT16:
        case GgufValueType::UINT32: case GgufValueType::INT32: case GgufValueType::UINT64: case GgufValueType::INT64:
            return true;
        default: return false;
    }
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path, bool use_mmap) {
    std::unique_ptr<GgufFile> file(new GgufFile());
    file->path_ = path;
    // O_NONBLOCK: a FIFO or a device is refused below instead of waiting in open() for a writer (no effect on files)
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) fail("cannot open model file '" + path + "': " + std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        fail("model path '" + path + "' is not a regular file");
    }
    size_t size = static_cast<size_t>(st.st_size);
    if (size < 24) {
        ::close(fd);
        fail("model file '" + path + "' is too small to be GGUF (" + std::to_string(size) + " bytes)");
    }
    if (use_mmap) {
        void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        ::close(fd);
        if (p == MAP_FAILED) fail("cannot map model file '" + path + "': " + std::strerror(errno));
        file->mapping_ = p;
        file->base_ = static_cast<const uint8_t*>(p);
    } else {
        try {
            file->owned_.resize(size);
        } catch (const std::bad_alloc&) {
            ::close(fd);
            throw_error(ErrorCode::out_of_memory, "not enough memory to read '" + path + "'");
        }
        size_t done = 0;
        while (done < size) {
            ssize_t r = ::read(fd, file->owned_.data() + done, size - done);
            if (r <= 0) {
                ::close(fd);
                fail("cannot read model file '" + path + "'");
            }
            done += static_cast<size_t>(r);
        }
        ::close(fd);
        file->base_ = file->owned_.data();
    }
    file->size_ = size;
    file->parse();
    return file;
}

std::unique_ptr<GgufFile> GgufFile::from_memory(const void* data, size_t size) {
    std::unique_ptr<GgufFile> file(new GgufFile());
    file->path_ = "<memory>";
    file->base_ = static_cast<const uint8_t*>(data);
    file->size_ = size;
    file->parse();
    return file;
}

GgufFile::~GgufFile() {
    if (mapping_) munmap(mapping_, size_);
}

void GgufFile::parse() {
    Cursor c(base_, size_);
    if (size_ < 4 || c.read<uint32_t>("the magic") != kGgufMagic)
        fail("'" + path_ + "' is not a GGUF file (wrong magic)");
    version_ = c.read<uint32_t>("the version");
    if (version_ != 2 && version_ != 3)
        fail("unsupported GGUF version " + std::to_string(version_) + " (supported: 2, 3)");
    uint64_t n_tensors = c.read<uint64_t>("the tensor count");
    uint64_t n_kv = c.read<uint64_t>("the metadata count");
    // Each metadata entry needs >= 12 bytes (key length + type), each tensor info >= 24.
    if (n_kv > c.remaining() / 12) fail("GGUF metadata count " + std::to_string(n_kv) + " exceeds the file");
    if (n_tensors > c.remaining() / 24) fail("GGUF tensor count " + std::to_string(n_tensors) + " exceeds the file");

    for (uint64_t k = 0; k < n_kv; ++k) {
        std::string key = c.read_string("a metadata key");
        GgufValue v;
        v.type = read_value_type(c, key);
        if (v.type == GgufValueType::STRING) v.str = c.read_string(key.c_str());
        else if (v.type == GgufValueType::ARRAY) read_array(c, v, key, 0);
        else read_scalar(c, v.type, v);
        if (values_.count(key)) fail("GGUF metadata key '" + key + "' appears twice");
        key_order_.push_back(key);
        values_.emplace(std::move(key), std::move(v));
    }

    if (const GgufValue* a = find("general.alignment")) {
        if (!a->is_integer() || a->u == 0 || (a->u & (a->u - 1)) != 0 || a->u > 65536)
            fail("GGUF general.alignment must be a power of two");
        alignment_ = static_cast<size_t>(a->u);
    }

    tensors_.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t k = 0; k < n_tensors; ++k) {
        GgufTensor t;
        t.name = c.read_string("a tensor name");
        uint32_t n_dims = c.read<uint32_t>("tensor dimensions");
        if (n_dims == 0 || n_dims > kMaxDims)
            fail("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions (1..4 allowed)");
        t.n_dims = static_cast<int>(n_dims);
        uint64_t n_elements = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            uint64_t ne = c.read<uint64_t>("a tensor dimension");
            if (ne == 0 || ne > (1ull << 40)) fail("tensor '" + t.name + "' has an absurd dimension " + std::to_string(ne));
            if (n_elements > std::numeric_limits<uint64_t>::max() / ne) fail("tensor '" + t.name + "' is too large");
            n_elements *= ne;
            t.ne[d] = static_cast<int64_t>(ne);
        }
        if (n_elements > (1ull << 40)) fail("tensor '" + t.name + "' has too many elements");
        uint32_t type_id = c.read<uint32_t>("a tensor type");
        const GgmlTypeTraits* traits = ggml_type_traits(type_id);
        if (!traits) fail("tensor '" + t.name + "' has unknown tensor type id " + std::to_string(type_id));
        t.type = static_cast<GgmlType>(type_id);
        if (t.ne[0] % traits->block_size != 0)
            fail("tensor '" + t.name + "' row length " + std::to_string(t.ne[0]) + " is not a multiple of the " +
                 traits->name + " block size");
        t.n_bytes = static_cast<size_t>(n_elements / traits->block_size) * traits->type_size;
        t.offset = c.read<uint64_t>("a tensor offset");
        if (t.offset % alignment_ != 0) fail("tensor '" + t.name + "' offset is not aligned");
        if (tensor_index_.count(t.name)) fail("tensor '" + t.name + "' appears twice");
        tensor_index_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
    }

    // Data section starts at the next multiple of the alignment.
    size_t data_start = (c.position() + alignment_ - 1) / alignment_ * alignment_;
    if (n_tensors > 0 && data_start > size_) fail("GGUF file is truncated before its tensor data");
    for (GgufTensor& t : tensors_) {
        uint64_t avail = size_ - std::min(data_start, size_);
        if (t.offset > avail || t.n_bytes > avail - t.offset)
            fail("tensor '" + t.name + "' extends past the end of the file (truncated or corrupt)");
        t.data = base_ + data_start + t.offset;
    }
}

const GgufValue* GgufFile::find(const std::string& key) const {
    auto it = values_.find(key);
    return it == values_.end() ? nullptr : &it->second;
}

std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
    const GgufValue* v = find(key);
    if (!v) return fallback;
    if (v->type != GgufValueType::STRING) fail("GGUF metadata '" + key + "' should be a string");
    return v->str;
}

int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
    const GgufValue* v = find(key);
    if (!v) return fallback;
    if (!v->is_integer()) fail("GGUF metadata '" + key + "' should be an integer");
    if (v->type == GgufValueType::UINT64 && v->u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("GGUF metadata '" + key + "' is out of range");
    return v->i;
}

int64_t GgufFile::require_int(const std::string& key) const {
    if (!find(key)) fail("GGUF metadata '" + key + "' is missing");
    return get_int(key, 0);
}

double GgufFile::get_float(const std::string& key, double fallback) const {
    const GgufValue* v = find(key);
    if (!v) return fallback;
    if (v->is_float()) return v->f;
    if (v->is_integer()) return static_cast<double>(v->i);
    fail("GGUF metadata '" + key + "' should be a number");
}

bool GgufFile::get_bool(const std::string& key, bool fallback) const {
    const GgufValue* v = find(key);
    if (!v) return fallback;
    if (v->type == GgufValueType::BOOL || v->is_integer()) return v->u != 0;
    fail("GGUF metadata '" + key + "' should be a bool");
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return {};
    if (v->type != GgufValueType::ARRAY || v->array_type != GgufValueType::STRING)
        fail("GGUF metadata '" + key + "' should be an array of strings");
    return v->array_strings;
}

std::vector<float> GgufFile::get_float_array(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return {};
    if (v->type != GgufValueType::ARRAY || (v->array_data == nullptr && v->array_length > 0) ||
        v->array_type == GgufValueType::STRING || v->array_type == GgufValueType::ARRAY)
        fail("GGUF metadata '" + key + "' should be an array of numbers");
    std::vector<float> out(static_cast<size_t>(v->array_length));
    for (uint64_t k = 0; k < v->array_length; ++k) out[k] = static_cast<float>(array_number(*v, k));
    return out;
}

std::vector<int32_t> GgufFile::get_int_array(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return {};
    if (v->type != GgufValueType::ARRAY || v->array_type == GgufValueType::STRING ||
        v->array_type == GgufValueType::ARRAY || v->array_type == GgufValueType::FLOAT32 ||
        v->array_type == GgufValueType::FLOAT64)
        fail("GGUF metadata '" + key + "' should be an array of integers");
    std::vector<int32_t> out(static_cast<size_t>(v->array_length));
    for (uint64_t k = 0; k < v->array_length; ++k) out[k] = static_cast<int32_t>(array_number(*v, k));
    return out;
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace lazyllm_edge
