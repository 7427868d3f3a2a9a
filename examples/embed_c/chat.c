/* le_chat: a terminal chat over the lazyllm_edge C API. Streams the reply token by token; Ctrl-C stops
 * the reply (the chat goes on), Ctrl-C at the prompt or end of input quits.
 *   le_chat MODEL.gguf [--max-tokens N] [--ctx N] [--temp T] [--seed N] [--lazy SPEC] [--system TEXT]
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lazyllm_edge/lazyllm_edge.h>

#define MAX_TURNS 64

static le_session* volatile active = NULL;  /* the session generating now, for the signal handler */

static void on_sigint(int sig) {
    (void)sig;
    le_session* s = active;
    if (s) le_session_cancel(s);  /* async-signal-safe: stops the reply after the current token */
    else _Exit(130);              /* at the prompt: quit */
}

/* The reply so far: printed as it streams and kept for the conversation history. */
typedef struct {
    char* text;
    size_t len, cap;
} reply_buf;

static int print_piece(const char* piece, size_t len, le_token token, void* user) {
    reply_buf* r = (reply_buf*)user;
    (void)token;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    if (r->len + len + 1 > r->cap) {
        size_t cap = 2 * (r->len + len + 1);
        char* grown = realloc(r->text, cap);
        if (!grown) return 1;  /* out of memory: stop the reply */
        r->text = grown;
        r->cap = cap;
    }
    memcpy(r->text + r->len, piece, len);
    r->len += len;
    r->text[r->len] = '\0';
    return 0;
}

static int fail(const char* what, le_status st) {
    fprintf(stderr, "le_chat: %s: %s (%s)\n", what, le_last_error(), le_status_name(st));
    return 1;
}

/* Renders the conversation into a malloc'd prompt (the buffer is sized by a first call). */
static char* render(le_model* model, const le_chat_message* msgs, size_t n) {
    size_t len = 0;
    le_status st = le_chat_render(model, msgs, n, NULL, 0, &len);
    if (st != LE_ERR_BUFFER_TOO_SMALL) return NULL;
    char* buf = malloc(len + 1);
    if (buf && le_chat_render(model, msgs, n, buf, len + 1, &len) != LE_OK) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [--max-tokens N] [--ctx N] [--temp T] [--seed N] [--lazy SPEC] [--system TEXT]\n", argv[0]);
        return 2;
    }
    if (le_check_abi(LE_API_VERSION) != LE_OK) return fail("incompatible library", LE_ERR_ABI);
    le_sampling_params sp;
    le_sampling_params_init(&sp);
    le_session_params cp;
    le_session_params_init(&cp);
    int max_tokens = 256;
    const char* system = NULL;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--max-tokens")) max_tokens = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ctx")) cp.n_ctx = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--temp")) sp.temperature = (float)atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed")) sp.seed = strtoull(argv[i + 1], NULL, 10), sp.has_seed = 1;
        else if (!strcmp(argv[i], "--lazy")) cp.lazy = argv[i + 1];
        else if (!strcmp(argv[i], "--system")) system = argv[i + 1];
        else {
            fprintf(stderr, "le_chat: unknown option %s\n", argv[i]);
            return 2;
        }
    }

    le_model* model = NULL;
    le_status st = le_model_load(argv[1], NULL, &model);
    if (st != LE_OK) return fail("cannot load the model", st);
    le_session* session = NULL;
    st = le_session_create(model, &cp, &session);
    if (st != LE_OK) return fail("cannot create a session", st);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);

    /* the whole conversation is re-rendered and re-fed each turn: simple, and right for any template */
    le_chat_message msgs[2 * MAX_TURNS + 1];
    char* owned[2 * MAX_TURNS + 1] = {0};
    size_t n = 0;
    if (system) msgs[n++] = (le_chat_message){"system", system};
    char line[4096];
    int rc = 0;
    while (n + 2 <= 2 * MAX_TURNS + 1) {
        printf("> ");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) break;
        line[strcspn(line, "\n")] = '\0';
        if (!strcmp(line, "/quit")) break;
        owned[n] = strdup(line);
        msgs[n] = (le_chat_message){"user", owned[n]};
        ++n;
        char* prompt = render(model, msgs, n);
        if (!prompt) {
            rc = fail("cannot render the chat", LE_ERR_UNSUPPORTED);
            break;
        }
        le_session_reset(session);
        st = le_session_feed_text(session, prompt, strlen(prompt), 1, 1);
        free(prompt);
        if (st != LE_OK) {
            rc = fail("cannot feed the prompt", st);
            break;
        }
        le_finish_reason finish = LE_FINISH_NONE;
        int32_t n_gen = 0;
        reply_buf reply = {calloc(1, 1), 0, 1};
        active = session;
        st = le_session_generate(session, &sp, max_tokens, print_piece, &reply, &finish, &n_gen);
        active = NULL;
        if (st != LE_OK) {
            free(reply.text);
            rc = fail("generation failed", st);
            break;
        }
        le_session_stats stats;
        le_session_get_stats(session, &stats);
        printf("\n[%d tokens, TTFT %.3f s, %.1f tok/s%s]\n", n_gen, stats.ttft_s, stats.decode_tokens_per_s,
               finish == LE_FINISH_CANCELLED ? ", interrupted" : finish == LE_FINISH_LENGTH ? ", length" : "");
        owned[n] = reply.text;
        msgs[n] = (le_chat_message){"assistant", owned[n]};
        ++n;
    }
    for (size_t i = 0; i < n; ++i) free(owned[i]);
    le_session_free(session);
    le_model_free(model);
    return rc;
}
