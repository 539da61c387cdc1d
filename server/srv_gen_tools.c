/* srv_gen_tools.c — splits a generated answer into free text or tool calls (see
 * srv_gen_tools.h): a byte-at-a-time JSON reader that follows strings, escapes and nesting,
 * and at the level of a call object takes the "name" string and the arguments value's text.
 * Loop thread only. */
#include "srv_gen_tools.h"

#include <string.h>

enum { PH_KEY = 0, PH_VALUE };
enum { CAP_NONE = 0, CAP_KEY, CAP_NAME, CAP_ARGS };
enum { VAL_OTHER = 0, VAL_NAME, VAL_ARGS };

static int blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

void srv_toolscan_init(srv_toolscan *ts, const char *args_key, int arrays)
{
    memset(ts, 0, sizeof(*ts));
    ts->args_key = args_key;
    ts->arrays = arrays;
}

void srv_toolscan_free(srv_toolscan *ts)
{
    srv_buf_free(&ts->held);
    srv_buf_free(&ts->raw);
    srv_buf_free(&ts->key);
    for (int i = 0; i < SRV_MAX_TOOL_CALLS; i++) {
        srv_buf_free(&ts->calls[i].name);
        srv_buf_free(&ts->calls[i].args);
    }
}

static srv_tool_call *cur(srv_toolscan *ts)
{
    return ts->n_calls > 0 && !ts->overflow ? &ts->calls[ts->n_calls - 1] : NULL;
}

static void key_is(srv_toolscan *ts)
{
    const srv_buf *k = &ts->key;
    size_t al = strlen(ts->args_key);
    if (k->len == 4 && memcmp(k->p, "name", 4) == 0)
        ts->value = VAL_NAME;
    else if (k->len == al && memcmp(k->p, ts->args_key, al) == 0)
        ts->value = VAL_ARGS;
    else
        ts->value = VAL_OTHER;
}

/* Strings, escapes and nesting, for bytes inside the arguments value. */
static void follow(srv_toolscan *ts, unsigned char c)
{
    if (ts->in_str) {
        if (ts->esc) ts->esc = 0;
        else if (c == '\\') ts->esc = 1;
        else if (c == '"') ts->in_str = 0;
        return;
    }
    if (c == '"') ts->in_str = 1;
    else if (c == '{' || c == '[') ts->depth++;
    else if (c == '}' || c == ']') ts->depth--;
}

static void byte(srv_toolscan *ts, unsigned char c)
{
    srv_tool_call *call = cur(ts);
    if (ts->capture == CAP_ARGS) {
        if (!ts->in_str && ts->depth == ts->call_level && (c == ',' || c == '}')) {
            ts->capture = CAP_NONE;   /* the value ended; c is the call's own */
            if (call) {
                call->args.len = srv_tool_call_ready(call);
                if (call->args.p)
                    call->args.p[call->args.len] = '\0';   /* srv_buf keeps text terminated */
                call->args_done = 1;
            }
        } else {
            if (call && (call->args.len || !blank(c)))
                srv_buf_append(&call->args, &c, 1);
            follow(ts, c);
            return;
        }
    }
    if (ts->in_str) {
        if (ts->esc) {
            ts->esc = 0;
        } else if (c == '\\') {
            ts->esc = 1;
        } else if (c == '"') {
            ts->in_str = 0;
            if (ts->capture == CAP_KEY)
                key_is(ts);
            else if (ts->capture == CAP_NAME && call)
                call->name_done = 1;
            ts->capture = CAP_NONE;
            return;
        }
        if (ts->capture == CAP_KEY)
            srv_buf_append(&ts->key, &c, 1);
        else if (ts->capture == CAP_NAME && call)
            srv_buf_append(&call->name, &c, 1);
        return;
    }
    int at_call = ts->depth == ts->call_level;
    switch (c) {
    case '"':
        ts->in_str = 1;
        if (at_call && ts->phase == PH_KEY) {
            ts->capture = CAP_KEY;
            ts->key.len = 0;
        } else if (at_call && ts->phase == PH_VALUE && ts->value == VAL_NAME) {
            ts->capture = CAP_NAME;
        }
        break;
    case ':':
        if (at_call) {
            ts->phase = PH_VALUE;
            if (ts->value == VAL_ARGS)
                ts->capture = CAP_ARGS;
        }
        break;
    case ',':
        if (at_call)
            ts->phase = PH_KEY;
        break;
    case '{':
    case '[':
        if (ts->depth == 0)
            ts->call_level = c == '[' ? 2 : 1;
        ts->depth++;
        if (c == '{' && ts->depth == ts->call_level) {
            if (ts->n_calls == SRV_MAX_TOOL_CALLS)
                ts->overflow = 1;
            else
                ts->n_calls++;
            ts->phase = PH_KEY;
            ts->value = VAL_OTHER;
        }
        break;
    case '}':
    case ']':
        if (c == '}' && at_call && call)
            call->complete = call->name_done && call->args_done;
        if (ts->depth > 0 && --ts->depth == 0)
            ts->closed = 1;
        break;
    default:
        break;
    }
}

void srv_toolscan_feed(srv_toolscan *ts, const char *p, size_t n, srv_buf *text_out)
{
    size_t i = 0;
    for (; i < n && ts->mode == SRV_TS_UNDECIDED; i++) {
        unsigned char c = (unsigned char)p[i];
        if (blank(c)) {
            srv_buf_append(&ts->held, &c, 1);
            continue;
        }
        ts->mode = c == '{' || (c == '[' && ts->arrays) ? SRV_TS_CALLS : SRV_TS_TEXT;
        if (ts->mode == SRV_TS_TEXT) {
            srv_buf_append(text_out, ts->held.p ? ts->held.p : "", ts->held.len);
            srv_buf_free(&ts->held);
        }
        break;
    }
    if (i == n)
        return;
    if (ts->mode == SRV_TS_TEXT) {
        srv_buf_append(text_out, p + i, n - i);
        return;
    }
    srv_buf_append(&ts->raw, p + i, n - i);
    for (; i < n; i++)
        byte(ts, (unsigned char)p[i]);
}

void srv_toolscan_end(srv_toolscan *ts, srv_buf *text_out)
{
    if (ts->mode == SRV_TS_UNDECIDED && ts->held.len) {
        srv_buf_append(text_out, ts->held.p, ts->held.len);
        srv_buf_free(&ts->held);
    }
    if (ts->mode == SRV_TS_UNDECIDED)
        ts->mode = SRV_TS_TEXT;
}

size_t srv_tool_call_ready(const srv_tool_call *call)
{
    size_t n = call->args.len;
    while (!call->args_done && n > 0 && blank((unsigned char)call->args.p[n - 1]))
        n--;
    return n;
}

int srv_toolscan_complete(const srv_toolscan *ts)
{
    if (ts->mode != SRV_TS_CALLS || !ts->closed || ts->n_calls == 0 || ts->overflow)
        return 0;
    for (int i = 0; i < ts->n_calls; i++) {
        if (!ts->calls[i].complete)
            return 0;
    }
    return 1;
}
