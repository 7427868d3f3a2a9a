// GGUF (v2, v3) reader over a read-only memory map. Every count, length, offset and tensor extent
// is checked against the file size before it is used; a bad file gives Error(model_load), never a crash.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "gguf/ggml_types.h"

namespace lazyllm_edge {

enum class GgufValueType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_value_type_name(GgufValueType t);

// One metadata value. Scalars live in the numeric fields; arrays of numbers point into the file.
struct GgufValue {
    GgufValueType type = GgufValueType::UINT8;
    uint64_t u = 0;       // unsigned integers and bool
    int64_t i = 0;        // signed integers
    double f = 0.0;       // floats
    std::string str;      // STRING
    GgufValueType array_type = GgufValueType::UINT8;  // ARRAY: element type
    uint64_t array_length = 0;                        // ARRAY: element count
    const uint8_t* array_data = nullptr;              // ARRAY of numbers: packed little-endian elements
    std::vector<std::string> array_strings;           // ARRAY of STRING
    // Nested arrays are accepted (skipped over, length checked) but their contents are not kept.

    bool is_integer() const;
    bool is_float() const { return type == GgufValueType::FLOAT32 || type == GgufValueType::FLOAT64; }
};

struct GgufTensor {
    std::string name;
    GgmlType type;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension, as in ggml
    uint64_t offset = 0;           // relative to the data section
    const uint8_t* data = nullptr; // inside the mapping
    size_t n_bytes = 0;
    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class GgufFile {
public:
    // Maps (or, with use_mmap=false, reads) the file and parses header, metadata and tensor infos.
    static std::unique_ptr<GgufFile> open(const std::string& path, bool use_mmap = true);
    // Parses a buffer the caller keeps alive (fuzzing, tests).
    static std::unique_ptr<GgufFile> from_memory(const void* data, size_t size);
    ~GgufFile();
    GgufFile(const GgufFile&) = delete;
    GgufFile& operator=(const GgufFile&) = delete;

    uint32_t version() const { return version_; }
    size_t alignment() const { return alignment_; }
    const std::string& path() const { return path_; }
    // The whole file as mapped or read (what a saved session's model digest is taken over).
    const uint8_t* bytes() const { return base_; }
    size_t size() const { return size_; }

    const GgufValue* find(const std::string& key) const;
    const std::vector<std::string>& keys() const { return key_order_; }

    // Typed getters: missing key -> fallback; present with a wrong type -> Error(model_load).
    std::string get_string(const std::string& key, const std::string& fallback = "") const;
    int64_t get_int(const std::string& key, int64_t fallback) const;
    double get_float(const std::string& key, double fallback) const;
    bool get_bool(const std::string& key, bool fallback) const;
    std::vector<std::string> get_string_array(const std::string& key) const;  // empty if missing
    std::vector<float> get_float_array(const std::string& key) const;         // numbers converted
    std::vector<int32_t> get_int_array(const std::string& key) const;
    // Required variants throw Error(model_load) naming the key when it is missing.
    int64_t require_int(const std::string& key) const;

    const std::vector<GgufTensor>& tensors() const { return tensors_; }
    const GgufTensor* find_tensor(const std::string& name) const;

private:
    GgufFile() = default;
    void parse();

    std::string path_;
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    void* mapping_ = nullptr;        // munmap on destruction when mapped
    std::vector<uint8_t> owned_;     // contents when read without mmap
    uint32_t version_ = 0;
    size_t alignment_ = 32;
    std::unordered_map<std::string, GgufValue> values_;
    std::vector<std::string> key_order_;
    std::vector<GgufTensor> tensors_;
    std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace lazyllm_edge
