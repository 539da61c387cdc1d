/* eng_backend.c — --device cpu|cuda|auto -> a kern_backend (see eng_backend.h). */
#include "eng_backend.h"

#include <string.h>

int eng_backend_open(kern_backend *be, const char *device, int threads, eng_err *err)
{
    memset(be, 0, sizeof *be);
    if (!device || !*device) device = "cpu";
    int want_cuda = strcmp(device, "cuda") == 0, is_auto = strcmp(device, "auto") == 0;
    if (!want_cuda && !is_auto && strcmp(device, "cpu") != 0)
        return eng_err_set(err, ENG_E_INVAL, "unknown device '%s' (cpu, cuda or auto)", device);
    /* auto on a machine without an NVIDIA driver: do not load the CUDA libraries to find out */
    if (want_cuda || (is_auto && kern_cuda_driver_present())) {
        int rc = kern_cuda_backend_create(be, 0);
        if (rc == 0) return 0;
        if (want_cuda) {
            char why[512] = "";
            if (rc == KERN_E_UNSUPPORTED && kern_cuda_device_count(why, sizeof why) == 0)
                return eng_err_set(err, ENG_E_DEVICE, "--device cuda: no usable GPU (%s)", why);
            return eng_err_set(err, ENG_E_DEVICE, "--device cuda: %s", kern_strerror(rc));
        }
    }
    int rc = kern_cpu_backend_create(be, threads);
    if (rc) return eng_err_set(err, ENG_E_NOMEM, "cpu backend: %s", kern_strerror(rc));
    return 0;
}
