/* eng_file.h — opening the files a user names (models, tokenizers, templates, texts): regular
 * files only, checked before anything can block. open() of a FIFO waits for a writer forever
 * (and a model load that never returns keeps a server from ever shutting down), and a device
 * such as /dev/zero reads without end. Any thread. */
#ifndef ENG_FILE_H
#define ENG_FILE_H

#include <stdio.h>

#include "eng_err.h"

/* A read-only descriptor (close-on-exec, blocking) of path, which must be a regular file:
 * the descriptor (>= 0), or a negative ENG_E_* code with err naming the path and the cause. */
int eng_file_open(const char *path, eng_err *err);

/* The same as a stdio stream ("rb"); NULL with err set. */
FILE *eng_file_fopen(const char *path, eng_err *err);

#endif
