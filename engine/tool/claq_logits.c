/* claq_logits.c — `claq logits` (placeholder). */
#include <stdio.h>

#include "claq_tool.h"

int claq_cmd_logits(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "claq logits: not implemented yet\n");
    return 2;
}
