/* claq_perplexity.c — `claq perplexity` (placeholder). */
#include <stdio.h>

#include "claq_tool.h"

int claq_cmd_perplexity(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "claq perplexity: not implemented yet\n");
    return 2;
}
