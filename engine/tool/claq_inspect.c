/* claq_inspect.c — `claq inspect` (placeholder until its issue lands; says so and fails). */
#include <stdio.h>

#include "claq_tool.h"

int claq_cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "claq inspect: not implemented yet\n");
    return 2;
}
