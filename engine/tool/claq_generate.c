/* claq_generate.c — `claq generate` (placeholder). */
#include <stdio.h>

#include "claq_tool.h"

int claq_cmd_generate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "claq generate: not implemented yet\n");
    return 2;
}
