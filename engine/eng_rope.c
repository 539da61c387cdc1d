/* eng_rope.c — RoPE inverse frequencies under the rope_scaling kinds of Hugging Face configs
 * (transformers' modeling_rope_utils, which the reference test re-derives in numpy):
 *   linear   freq_i = theta^(-2i/d) / factor
 *   dynamic  NTK-aware: theta' = theta * (factor^2 - factor + 1)^(d / (d - 2)), i.e. the base
 *            transformers would pick for a sequence of factor x original_max_position_embeddings,
 *            fixed at load as vLLM does (transformers recomputes it per forward from the current
 *            length, which a KV cache shared across steps and sequences cannot follow)
 *   llama3   wavelength w_i = 2 pi / freq_i; w_i > orig / low_freq_factor: freq_i / factor;
 *            w_i < orig / high_freq_factor: freq_i; between: (1 - s) freq_i / factor + s freq_i
 *            with s = (orig / w_i - low_freq_factor) / (high_freq_factor - low_freq_factor)
 * Computed in double, stored as float. Pure functions; any thread. */
#include <math.h>
#include <string.h>

#include "eng_model.h"

const char *eng_rope_type_name(eng_rope_type t)
{
    switch (t) {
    case ENG_ROPE_LINEAR: return "linear";
    case ENG_ROPE_DYNAMIC: return "dynamic";
    case ENG_ROPE_LLAMA3: return "llama3";
    default: return "default";
    }
}

int eng_rope_type_from_name(const char *name)
{
    for (int t = ENG_ROPE_DEFAULT; t <= ENG_ROPE_LLAMA3; t++)
        if (strcmp(name, eng_rope_type_name((eng_rope_type)t)) == 0) return t;
    return -1;
}

int eng_rope_freq(const eng_config *c, float *freq)
{
    const eng_rope_scaling *s = &c->rope_scaling;
    if (s->type == ENG_ROPE_DEFAULT) return 0;
    const int d = c->head_dim, half = d / 2;
    double base = c->rope_theta;
    if (s->type == ENG_ROPE_DYNAMIC) {
        const double f = s->factor;
        base *= pow(f * f - f + 1.0, (double)d / (double)(d - 2));
    }
    const double pi2 = 6.283185307179586;
    for (int i = 0; i < half; i++) {
        const double f0 = 1.0 / pow(base, (double)(2 * i) / (double)d);
        double f = f0;
        if (s->type == ENG_ROPE_LINEAR) {
            f = f0 / s->factor;
        } else if (s->type == ENG_ROPE_LLAMA3) {
            const double wl = pi2 / f0, orig = s->orig_max_pos;
            const double low_wl = orig / s->low_freq_factor, high_wl = orig / s->high_freq_factor;
            if (wl > low_wl) {
                f = f0 / s->factor;
            } else if (wl >= high_wl) {   /* medium band: smooth between the two */
                const double sm = (orig / wl - s->low_freq_factor) /
                                  (s->high_freq_factor - s->low_freq_factor);
                f = (1.0 - sm) * f0 / s->factor + sm * f0;
            }
        }
        freq[i] = (float)f;
    }
    return 1;
}
