/* claq_bench.c — `claq bench` (placeholder until its issue lands; says so and fails). */
#include <stdio.h>

#include "claq_tool.h"

int claq_cmd_bench(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "claq bench: not implemented yet\n");
    return 2;
}
