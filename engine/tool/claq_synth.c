/* claq_synth.c — `claq synth` (placeholder until its issue lands; says so and fails). */
#include <stdio.h>

#include "claq_tool.h"

int claq_cmd_synth(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "claq synth: not implemented yet\n");
    return 2;
}
