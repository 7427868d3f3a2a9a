// The generation loop (Generation in include/lazyllm_edge/lazyllm_edge.hpp), shared by the Python iterator, the
// C API and the CLI: prompt, sampling, text pieces, stop strings and the finish reason in one place.
#include <optional>
#include <utility>

#include "model/model.h"
#include "runtime/session_state.h"
#include "runtime/stop_strings.h"
#include "tokenizer/tokenizer.h"

namespace lazyllm_edge {

const char* finish_reason_name(FinishReason reason) {
    switch (reason) {
        case FinishReason::none: return "none";
        case FinishReason::stop: return "stop";
        case FinishReason::length: return "length";
        case FinishReason::cancelled: return "cancelled";
    }
    return "none";
}

struct Generation::State {
    State(Session& session, SessionImpl& impl, Sampler& sampler, const GenerationParams& params)
        : session(session), impl(impl), sampler(sampler), params(params), stops(params.stop),
          detok(session.model()->tokenizer()) {
        SessionUse use(impl);
        context_size = static_cast<int>(impl.tokens.size());
        epoch = impl.epoch;
    }

    Session& session;
    SessionImpl& impl;
    std::unique_ptr<Sampler> own_sampler;  // the one made from params.sampling, if the caller gave none
    Sampler& sampler;
    GenerationParams params;
    StopStrings stops;
    StreamingDetokenizer detok;
    std::vector<int32_t> prompt;     // fed by the first step
    const float* logits = nullptr;   // of the session's last append
    int context_size = 0;            // the session's tokens as this generation left them
    uint64_t epoch = 0;              // the session's epoch as this generation left it (any other change: superseded)
    bool started = false;
    int32_t unfed = -1;              // the last token emitted: fed before the next one is sampled
    int32_t last_token = -1;
    int n_generated = 0;
    FinishReason finish = FinishReason::none;
    bool failed = false;
    bool tail_returned = false;
    bool stop_requested = false;
    std::atomic<bool> cancel_requested{false};
    std::optional<LazyConfig> lazy_to_restore;  // the session's schedule while params.lazy is in use

    // Error(busy) when another call changed the session since this generation's last step (a reset, an append,
    // another generation, logits()), so it never continues on a context that is not its own.
    void expect_unchanged() const {
        if (impl.epoch != epoch)
            throw_error(ErrorCode::busy, "this generation was superseded: another call used its session in between "
                                         "(one generation at a time per session)");
    }
    void expect_session() {
        SessionUse use(impl);  // (another thread inside right now: Error(busy) here)
        expect_unchanged();
    }

    // Feeds ids (the prompt: cancellable while it is computed; a generated token: not, so what was shown is fed)
    // and samples the next token when a sampler is given.
    const float* append(const std::vector<int32_t>& ids, bool is_prompt, int32_t* sampled) {
        SessionUse use(impl);  // the check, the step and the sampling as one call: nothing can slip in between
        expect_unchanged();
        const CancelFlags cancel = is_prompt ? CancelFlags{&cancel_requested, params.cancel} : CancelFlags{};
        logits = append_tokens(impl, ids.data(), static_cast<int>(ids.size()), nullptr, cancel,
                               is_prompt ? AppendKind::prompt : AppendKind::automatic);
        context_size = static_cast<int>(impl.tokens.size());
        epoch = impl.epoch;
        if (sampled) *sampled = sampler.sample(logits, impl.tokens.data(), context_size);
        return logits;
    }
    void feed(const std::vector<int32_t>& ids, bool is_prompt = false) { append(ids, is_prompt, nullptr); }
    int32_t feed_and_sample(const std::vector<int32_t>& ids, bool is_prompt = false) {
        int32_t token = -1;
        append(ids, is_prompt, &token);
        return token;
    }

    // The prompt fed (and the first token sampled when `sample`); the generation ends "cancelled" instead when a
    // cancel request comes while the prompt is computed (nothing fed).
    std::optional<int32_t> feed_prompt(bool sample) {
        try {
            if (!sample) {
                feed(prompt, true);
                return -1;
            }
            return feed_and_sample(prompt, true);
        } catch (const Error& e) {
            if (e.code() != ErrorCode::cancelled) throw;
            take_cancel();  // the request is consumed here
            return end(FinishReason::cancelled);
        }
    }

    bool take_cancel() {
        const bool external = params.cancel && params.cancel->exchange(false);  // a request is consumed once
        return cancel_requested.exchange(false) || external;
    }
    bool limit_reached() const { return params.max_tokens >= 0 && n_generated >= params.max_tokens; }

    std::nullopt_t end(FinishReason reason) {
        finish = reason;
        restore_lazy();
        return std::nullopt;
    }

    // Puts the session's own schedule back, unless another call has taken the session over since.
    void restore_lazy() {
        if (!lazy_to_restore) return;
        LazyConfig previous = std::move(*lazy_to_restore);
        lazy_to_restore.reset();
        {
            SessionUse use(impl);
            if (impl.epoch != epoch) return;
        }
        session.set_lazy_config(previous);
    }

    // The prompt is the whole context: the session keeps what it already holds of it (under this generation's
    // schedule) and only the rest is fed.
    void keep_common_prefix() {
        SessionUse use(impl);
        expect_unchanged();
        const int kept = reuse_prompt_prefix(impl, prompt.data(), static_cast<int>(prompt.size()));
        prompt.erase(prompt.begin(), prompt.begin() + kept);
        context_size = kept;
        epoch = impl.epoch;
    }

    // Samples the next token, feeding the last one first; nothing when the generation ends instead.
    std::optional<int32_t> sample_next() {
        expect_session();
        if (!started) {
            started = true;
            if (take_cancel()) return end(FinishReason::cancelled);
            if (params.lazy) {
                {
                    SessionUse use(impl);
                    lazy_to_restore = impl.prune_plan->config;
                }
                session.set_lazy_config(*params.lazy);
            }
            if (params.reuse_prefix && !prompt.empty()) keep_common_prefix();
            if (limit_reached()) {
                if (!prompt.empty() && !feed_prompt(false)) return std::nullopt;  // max_tokens 0: the prompt is still fed
                return end(FinishReason::length);
            }
            if (prompt.empty()) {
                SessionUse use(impl);
                expect_unchanged();
                return sampler.sample(logits, impl.tokens.data(), static_cast<int>(impl.tokens.size()));
            }
            return feed_prompt(true);
        }
        // the last token is fed before anything else ends the generation, so the context holds what was shown
        if (context_size >= session.n_ctx()) return end(FinishReason::length);  // no room for it
        FinishReason reason = FinishReason::none;
        if (stop_requested) reason = FinishReason::stop;
        else if (take_cancel()) reason = FinishReason::cancelled;
        else if (limit_reached()) reason = FinishReason::length;
        if (reason != FinishReason::none) {
            feed({unfed});
            return end(reason);
        }
        return feed_and_sample({unfed});
    }

    // One token: sampled, checked for the end of generation, turned into text; false when the generation ended.
    bool step(GeneratedPiece& piece) {
        const std::optional<int32_t> token = sample_next();
        if (!token) return false;
        unfed = -1;
        if (!params.ignore_eos && session.model()->tokenizer().is_end_of_generation(*token)) {
            end(FinishReason::stop);  // not fed, not shown
            return false;
        }
        ++n_generated;
        unfed = last_token = *token;
        bool stopped = false;
        piece.text = stops.push(detok.push(*token), &stopped);
        piece.token = *token;
        if (stopped) {
            tail_returned = true;  // what followed the stop string is dropped
            end(FinishReason::stop);
        }
        return true;
    }

    // What was held back when the generation ended: an incomplete character, the start of a stop string.
    std::string tail() {
        bool stopped = false;
        std::string text = stops.push(detok.flush(), &stopped);
        if (stopped) finish = FinishReason::stop;
        else text += stops.flush();
        return text;
    }
};

Generation::Generation(Session& session, std::vector<int32_t> prompt, const GenerationParams& params) {
    if (prompt.empty()) throw_error(ErrorCode::invalid_argument, "the prompt is empty");
    auto sampler = std::make_unique<Sampler>(params.sampling, session.model()->info().n_vocab);
    state_ = std::make_unique<State>(session, *session.impl_, *sampler, params);
    state_->own_sampler = std::move(sampler);
    state_->prompt = std::move(prompt);
}

Generation::Generation(Session& session, const float* logits, Sampler& sampler, const GenerationParams& params) {
    if (!logits) throw_error(ErrorCode::invalid_argument, "nothing to continue from: feed a prompt first");
    state_ = std::make_unique<State>(session, *session.impl_, sampler, params);
    state_->logits = logits;
}

Generation::~Generation() {
    try {
        state_->restore_lazy();
    } catch (...) {  // another thread is inside the session: it keeps the schedule it has
    }
}

bool Generation::next(GeneratedPiece& piece) {
    State& g = *state_;
    piece.text.clear();
    piece.token = g.last_token;
    if (g.failed || g.tail_returned) return false;
    if (g.finish == FinishReason::none) {
        try {
            if (g.step(piece)) return true;
        } catch (...) {
            g.failed = true;
            try {
                g.restore_lazy();
            } catch (...) {  // the step's own error is the one to report
            }
            throw;
        }
    }
    g.tail_returned = true;
    piece.text = g.tail();
    piece.token = g.last_token;
    return !piece.text.empty();
}

void Generation::cancel() { state_->cancel_requested.store(true); }
void Generation::stop() { state_->stop_requested = true; }
FinishReason Generation::finish_reason() const { return state_->finish; }
int Generation::n_generated() const { return state_->n_generated; }
const float* Generation::logits() const { return state_->logits; }

}  // namespace lazyllm_edge
