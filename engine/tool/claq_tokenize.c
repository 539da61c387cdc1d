/* claq_tokenize.c — `claq tokenize` (placeholder). */
#include <stdio.h>

#include "claq_tool.h"

int claq_cmd_tokenize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "claq tokenize: not implemented yet\n");
    return 2;
}
