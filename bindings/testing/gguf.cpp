// GGUF inspection for the tests: `_testing.read_gguf(path)`, the reader's view of a file (metadata and tensor
// table) as Python objects.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <cstring>

#include "gguf/gguf_reader.h"

namespace nb = nanobind;
using namespace lazyllm_edge;

namespace {

nb::object array_element(const GgufValue& v, uint64_t k) {
    const uint8_t* p = v.array_data;
    auto load = [&](auto tag) {
        decltype(tag) x;
        std::memcpy(&x, p + k * sizeof(x), sizeof(x));
        return x;
    };
    switch (v.array_type) {
        case GgufValueType::UINT8: return nb::int_(load(uint8_t()));
        case GgufValueType::INT8: return nb::int_(load(int8_t()));
        case GgufValueType::UINT16: return nb::int_(load(uint16_t()));
        case GgufValueType::INT16: return nb::int_(load(int16_t()));
        case GgufValueType::UINT32: return nb::int_(load(uint32_t()));
        case GgufValueType::INT32: return nb::int_(load(int32_t()));
        case GgufValueType::UINT64: return nb::int_(load(uint64_t()));
        case GgufValueType::INT64: return nb::int_(load(int64_t()));
        case GgufValueType::FLOAT32: return nb::float_(load(float()));
        case GgufValueType::FLOAT64: return nb::float_(load(double()));
        case GgufValueType::BOOL: return nb::bool_(load(uint8_t()) != 0);
        default: return nb::none();
    }
}

nb::object to_python(const GgufValue& v) {
    switch (v.type) {
        case GgufValueType::STRING: return nb::str(v.str.c_str(), v.str.size());
        case GgufValueType::BOOL: return nb::bool_(v.u != 0);
        case GgufValueType::FLOAT32: case GgufValueType::FLOAT64: return nb::float_(v.f);
        case GgufValueType::UINT8: case GgufValueType::UINT16: case GgufValueType::UINT32: case GgufValueType::UINT64:
            return nb::int_(v.u);
        case GgufValueType::ARRAY: {
            nb::list out;
            if (v.array_type == GgufValueType::STRING) {
                for (const auto& s : v.array_strings) out.append(nb::str(s.c_str(), s.size()));
            } else if (v.array_data) {
                for (uint64_t k = 0; k < v.array_length; ++k) out.append(array_element(v, k));
            }
            return out;
        }
        default: return nb::int_(v.i);
    }
}

}  // namespace

void register_gguf(nb::module_& m) {
    m.def("read_gguf", [](const std::string& path) {
        std::unique_ptr<GgufFile> f;
        {
            nb::gil_scoped_release release;
            f = GgufFile::open(path);
        }
        nb::dict meta;
        for (const std::string& key : f->keys()) meta[key.c_str()] = to_python(*f->find(key));
        nb::list tensors;
        for (const GgufTensor& t : f->tensors()) {
            nb::list shape;
            for (int d = 0; d < t.n_dims; ++d) shape.append(t.ne[d]);
            tensors.append(nb::make_tuple(t.name, ggml_type_name(t.type), shape, t.offset, t.n_bytes));
        }
        nb::dict out;
        out["version"] = f->version();
        out["alignment"] = f->alignment();
        out["metadata"] = meta;
        out["tensors"] = tensors;
        return out;
    }, "Parses a GGUF file: {'version', 'alignment', 'metadata': {key: value}, 'tensors': [(name, type, shape, offset, n_bytes)]}.");
}
