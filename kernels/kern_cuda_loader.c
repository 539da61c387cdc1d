/* kern_cuda_loader.c — the CUDA backend's entry points for the rest of the program
 * (kern_cuda_backend_create in kern.h, the extras of cuda/kern_cuda.h). In a CUDA build the
 * backend is libclaq_cuda.so, which links cudart and cuBLAS; it is loaded with dlopen the first
 * time a CUDA backend or the device count is asked for, so a run on the CPU never maps the CUDA
 * libraries (linked in, they cost every run ~150 MiB of RSS and ~0.5 s of start-up). Looked for
 * in $CLAQ_CUDA_LIB, beside the executable, in ../lib from it, then on the loader's path. Never
 * unloaded: backends point into it. The emulator build links the backend in and calls it
 * directly; a build without CUDA answers that it has none. No state of its own: dlopen keeps
 * the one handle. */
#include "kern_cuda.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int kern_cuda_driver_present(void)
{
    /* WSL's GPU paravirtualisation device, or a per-GPU node /dev/nvidiaN of the NVIDIA driver
     * (a container sees only the nodes of the GPUs it was given; /dev/nvidiactl alone means a
     * driver without a GPU here) */
    if (access("/dev/dxg", F_OK) == 0) return 1;
    DIR *d = opendir("/dev");
    if (!d) return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL)
        found = strncmp(e->d_name, "nvidia", 6) == 0 && e->d_name[6] >= '0' && e->d_name[6] <= '9';
    closedir(d);
    return found;
}

#if defined(CLAQ_HAVE_CUDA) && !defined(CLAQ_CUDA_EMU)
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>

#define CUDA_LIB_NAME "libclaq_cuda.so"

static void why_set(char *why, size_t why_len, const char *what, const char *detail)
{
    if (why && why_len)
        snprintf(why, why_len, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
}

/* Opens libclaq_cuda.so (dlopen returns the same handle once it is loaded), or NULL with the
 * reason. With only_if_loaded, never loads it (RTLD_NOLOAD). */
static void *cuda_lib(int only_if_loaded, char *why, size_t why_len)
{
    int flags = RTLD_NOW | RTLD_LOCAL | (only_if_loaded ? RTLD_NOLOAD : 0);
    const char *env = getenv("CLAQ_CUDA_LIB");
    if (env && *env) {
        void *h = dlopen(env, flags);
        if (!h) why_set(why, why_len, "CLAQ_CUDA_LIB", dlerror());
        return h;
    }
    char exe[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = '\0', strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = '\0';
        const char *rel[2] = {"", "/../lib"};
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof path, "%s%s/" CUDA_LIB_NAME, exe, rel[i]);
            if (access(path, F_OK) != 0) continue;
            void *h = dlopen(path, flags);
            /* the file is there but does not load (a missing libcudart, say): that is the news;
             * dlerror() names the file itself */
            if (!h && !only_if_loaded) why_set(why, why_len, dlerror(), NULL);
            return h;
        }
    }
    void *h = dlopen(CUDA_LIB_NAME, flags);
    if (!h) why_set(why, why_len, CUDA_LIB_NAME " is not beside the executable; the library "
                    "path gives", dlerror());
    return h;
}

static void *cuda_sym(int only_if_loaded, const char *name, char *why, size_t why_len)
{
    void *h = cuda_lib(only_if_loaded, why, why_len);
    if (!h) return NULL;
    void *f = dlsym(h, name);
    if (!f) why_set(why, why_len, name, dlerror());
    return f;
}

int kern_cuda_library_loadable(char *why, size_t why_len)
{
    return cuda_lib(0, why, why_len) != NULL;
}

int kern_cuda_device_count(char *why, size_t why_len)
{
    int (*f)(char *, size_t);
    *(void **)&f = cuda_sym(0, "kern_cuda_impl_device_count", why, why_len);
    return f ? f(why, why_len) : 0;
}

const char *kern_cuda_last_error(const kern_backend *b)
{
    const char *(*f)(const kern_backend *);
    *(void **)&f = cuda_sym(1, "kern_cuda_impl_last_error", NULL, 0);
    return f ? f(b) : "";   /* not loaded: b cannot be a CUDA backend */
}

int kern_cuda_set_prefill_min_n(kern_backend *b, int min_n)
{
    int (*f)(kern_backend *, int);
    *(void **)&f = cuda_sym(1, "kern_cuda_impl_set_prefill_min_n", NULL, 0);
    return f ? f(b, min_n) : KERN_E_INVAL;
}

int kern_cuda_set_mma_min_n(kern_backend *b, int min_n)
{
    int (*f)(kern_backend *, int);
    *(void **)&f = cuda_sym(1, "kern_cuda_impl_set_mma_min_n", NULL, 0);
    return f ? f(b, min_n) : KERN_E_INVAL;
}

int kern_cuda_set_graphs(kern_backend *b, int on)
{
    int (*f)(kern_backend *, int);
    *(void **)&f = cuda_sym(1, "kern_cuda_impl_set_graphs", NULL, 0);
    return f ? f(b, on) : KERN_E_INVAL;
}

void kern_cuda_get_graph_stats(const kern_backend *b, kern_cuda_graph_stats *out)
{
    void (*f)(const kern_backend *, kern_cuda_graph_stats *);
    *(void **)&f = cuda_sym(1, "kern_cuda_impl_get_graph_stats", NULL, 0);
    if (f) f(b, out);
    else memset(out, 0, sizeof *out);
}

int kern_cuda_backend_create(kern_backend *out, int device)
{
    if (!out) return KERN_E_INVAL;
    memset(out, 0, sizeof *out);
    int (*f)(kern_backend *, int);
    *(void **)&f = cuda_sym(0, "kern_cuda_impl_backend_create", NULL, 0);
    return f ? f(out, device) : KERN_E_UNSUPPORTED;
}

#elif defined(CLAQ_HAVE_CUDA)   /* the emulator build: the backend is linked in */

int kern_cuda_library_loadable(char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    return 1;
}

int kern_cuda_device_count(char *why, size_t why_len)
{
    return kern_cuda_impl_device_count(why, why_len);
}
const char *kern_cuda_last_error(const kern_backend *b) { return kern_cuda_impl_last_error(b); }
int kern_cuda_set_prefill_min_n(kern_backend *b, int min_n)
{
    return kern_cuda_impl_set_prefill_min_n(b, min_n);
}
int kern_cuda_set_mma_min_n(kern_backend *b, int min_n)
{
    return kern_cuda_impl_set_mma_min_n(b, min_n);
}
int kern_cuda_set_graphs(kern_backend *b, int on) { return kern_cuda_impl_set_graphs(b, on); }
void kern_cuda_get_graph_stats(const kern_backend *b, kern_cuda_graph_stats *out)
{
    kern_cuda_impl_get_graph_stats(b, out);
}
int kern_cuda_backend_create(kern_backend *out, int device)
{
    return kern_cuda_impl_backend_create(out, device);
}

#else   /* built without CUDA */

int kern_cuda_library_loadable(char *why, size_t why_len)
{
    if (why && why_len) snprintf(why, why_len, "this build has no CUDA backend");
    return 0;
}

int kern_cuda_device_count(char *why, size_t why_len)
{
    if (why && why_len)
        snprintf(why, why_len, "this build has no CUDA backend (no nvcc at build time, or "
                 "CLAQ_CUDA=OFF)");
    return 0;
}
const char *kern_cuda_last_error(const kern_backend *b) { (void)b; return ""; }
int kern_cuda_set_prefill_min_n(kern_backend *b, int min_n)
{
    (void)b;
    (void)min_n;
    return KERN_E_INVAL;
}
int kern_cuda_set_mma_min_n(kern_backend *b, int min_n)
{
    (void)b;
    (void)min_n;
    return KERN_E_INVAL;
}
int kern_cuda_set_graphs(kern_backend *b, int on)
{
    (void)b;
    (void)on;
    return KERN_E_INVAL;
}
void kern_cuda_get_graph_stats(const kern_backend *b, kern_cuda_graph_stats *out)
{
    (void)b;
    memset(out, 0, sizeof *out);
}
int kern_cuda_backend_create(kern_backend *out, int device)
{
    (void)device;
    if (out) memset(out, 0, sizeof *out);
    return KERN_E_UNSUPPORTED;
}

#endif
