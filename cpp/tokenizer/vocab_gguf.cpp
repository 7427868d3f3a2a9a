// read_tokenizer_vocab: tokenizer.ggml.* metadata -> TokenizerVocab, with llama.cpp's defaults.
#include <cctype>
#include <string>

#include "base/error.h"
#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace lazyllm_edge {

TokenizerVocab read_tokenizer_vocab(const GgufFile& f) {
    TokenizerVocab v;
    const GgufValue* model = f.find("tokenizer.ggml.model");
    if (!model) throw Error(ErrorCode::model_load, "GGUF has no tokenizer (tokenizer.ggml.model is missing)");
    v.model = f.get_string("tokenizer.ggml.model");
    v.pre = f.get_string("tokenizer.ggml.pre");
    v.model_name = f.get_string("general.name");
    for (char& c : v.model_name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const bool spm = v.model == "llama";
    const bool gemma4 = v.model == "gemma4";  // SentencePiece-style BPE; llama.cpp names its pre-tokenizer "gemma4"
    const bool bpe = v.model == "gpt2" || gemma4;
    if (v.model == "bert")
        throw Error(ErrorCode::model_load, "unsupported tokenizer model: 'bert' (WordPiece vocabularies of BERT-style "
                                           "embedding models are not supported; this engine runs generative LLMs)");
    if (!spm && !bpe)
        throw Error(ErrorCode::model_load, "unsupported tokenizer model: '" + v.model + "' (supported: llama, gpt2, gemma4)");
    if (gemma4) v.pre = "gemma4";

    v.tokens = f.get_string_array("tokenizer.ggml.tokens");
    if (v.tokens.empty()) throw Error(ErrorCode::model_load, "GGUF tokenizer.ggml.tokens is missing or empty");
    const size_t n = v.tokens.size();
    v.scores = f.get_float_array("tokenizer.ggml.scores");
    v.token_types = f.get_int_array("tokenizer.ggml.token_type");
    if (!v.scores.empty() && v.scores.size() < n)
        throw Error(ErrorCode::model_load, "GGUF tokenizer.ggml.scores has fewer entries than tokens");
    if (!v.token_types.empty() && v.token_types.size() < n)
        throw Error(ErrorCode::model_load, "GGUF tokenizer.ggml.token_type has fewer entries than tokens");
    v.scores.resize(v.scores.empty() ? 0 : n);
    v.token_types.resize(v.token_types.empty() ? 0 : n);
    if (bpe) {
        if (!f.find("tokenizer.ggml.merges")) throw Error(ErrorCode::model_load, "GGUF tokenizer.ggml.merges is missing");
        v.merges = f.get_string_array("tokenizer.ggml.merges");
    }

    // llama.cpp defaults: SPM bos=1 eos=2 unk=0; BPE bos=eos=11. Out-of-range ids are dropped; a bad
    // id in the file keeps the default.
    int64_t bos = spm ? 1 : 11, eos = spm ? 2 : 11, unk = spm ? 0 : -1, pad = -1, eot = -1, eom = -1;
    if (gemma4) bos = eos = -1;  // read from the file only
    auto in_range = [&](int64_t id) { return id >= 0 && static_cast<size_t>(id) < n; };
    auto read_id = [&](const char* key, int64_t& id) {
        if (!in_range(id)) id = -1;
        const GgufValue* val = f.find(key);
        if (!val) return;
        const int64_t x = f.get_int(key, -1);
        if (in_range(x)) id = x;
    };
    read_id("tokenizer.ggml.bos_token_id", bos);
    read_id("tokenizer.ggml.eos_token_id", eos);
    read_id("tokenizer.ggml.eot_token_id", eot);
    read_id("tokenizer.ggml.eom_token_id", eom);
    read_id("tokenizer.ggml.unknown_token_id", unk);
    read_id("tokenizer.ggml.padding_token_id", pad);
    v.bos_id = static_cast<int32_t>(bos);
    v.eos_id = static_cast<int32_t>(eos);
    v.unk_id = static_cast<int32_t>(unk);
    v.pad_id = static_cast<int32_t>(pad);
    v.eot_id = static_cast<int32_t>(eot);
    v.eom_id = static_cast<int32_t>(eom);

    bool add_bos = spm, add_space_prefix = spm;
    if (bpe) {
        static const char* bos_pres[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                                         "lfm2", "jina-v5-nano", "tekken", "chameleon"};
        for (const char* p : bos_pres)
            if (v.pre == p) add_bos = true;
    }
    v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", add_space_prefix);
    v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", add_bos);
    v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false);
    if (v.pre == "gemma4") v.add_bos = true;  // llama.cpp overrides it for Gemma 4 (its files say false)
    if (v.add_bos && v.bos_id < 0)
        throw Error(ErrorCode::model_load, "tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set");
    if (v.add_eos && v.eos_id < 0)
        throw Error(ErrorCode::model_load, "tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set");
    return v;
}

}  // namespace lazyllm_edge
