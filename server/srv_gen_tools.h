/* srv_gen_tools.h — the answer side of tool calling: reads an answer as it is generated and
 * tells free text from tool calls by its first non-blank byte ('{', or '[' when several calls
 * may come at once: the rule the scheduler's grammar follows), then splits the calls into
 * function names and argument text, so srv_gen can stream them as OpenAI does
 * (delta.tool_calls with an index and argument fragments) or answer message.tool_calls whole.
 * One scanner per choice; loop thread only. Does not validate (the grammar already did). */
#ifndef SRV_GEN_TOOLS_H
#define SRV_GEN_TOOLS_H

#include <stddef.h>

#include "srv_buf.h"

#define SRV_MAX_TOOL_CALLS 16   /* calls read out of one answer; more stay text in raw */

typedef struct srv_tool_call {
    srv_buf name;               /* the function's name */
    srv_buf args;               /* the arguments value as the model wrote it (JSON text) */
    int name_done, args_done, complete;
    int header_sent;            /* stream: the chunk with id, type and name went out */
    size_t args_sent;           /* stream: bytes of args sent so far */
} srv_tool_call;

enum { SRV_TS_UNDECIDED = 0, SRV_TS_TEXT, SRV_TS_CALLS };

typedef struct srv_toolscan {
    const char *args_key;       /* "arguments" or "parameters"; static */
    int arrays;                 /* '[' begins calls too (parallel_tool_calls) */
    int mode;                   /* SRV_TS_* */
    srv_buf held;               /* undecided: the blanks so far */
    srv_buf raw;                /* calls: everything read, for an answer that never ends */
    /* the JSON reader (the input is a valid prefix: the grammar saw to it) */
    int depth, in_str, esc, call_level;
    int phase;                  /* at call level: expecting a key, or a value */
    int capture;                /* what the bytes go into: nothing, key, name, arguments */
    int value;                  /* the value at call level belongs to: other, name, args */
    srv_buf key;
    int closed;                 /* the top-level value is complete */
    srv_tool_call calls[SRV_MAX_TOOL_CALLS];
    int n_calls;
    int overflow;               /* more calls than SRV_MAX_TOOL_CALLS */
} srv_toolscan;

void srv_toolscan_init(srv_toolscan *ts, const char *args_key, int arrays);
void srv_toolscan_free(srv_toolscan *ts);   /* safe on a zeroed struct, idempotent */
/* Feeds n bytes of the answer. Bytes that turn out to be free text (with the blanks held
 * before them) are appended to text_out. */
void srv_toolscan_feed(srv_toolscan *ts, const char *p, size_t n, srv_buf *text_out);
/* The answer ended: blanks still held are text (appended to text_out). */
void srv_toolscan_end(srv_toolscan *ts, srv_buf *text_out);
/* Bytes of call->args that are final: all of them once the value ended, else all but the
 * blanks at the end (they may turn out to trail the value, which a whole answer trims). */
size_t srv_tool_call_ready(const srv_tool_call *call);
/* 1 when the answer is tool calls, all of them complete and the top-level value closed. */
int srv_toolscan_complete(const srv_toolscan *ts);

#endif
