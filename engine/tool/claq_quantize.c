/* claq_quantize.c — `claq quantize` (placeholder until its issue lands; says so and fails). */
#include <stdio.h>

#include "claq_tool.h"

int claq_cmd_quantize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "claq quantize: not implemented yet\n");
    return 2;
}
