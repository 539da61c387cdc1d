/* eng_file.c — regular-file opening for user-named inputs (eng_file.h). Any thread. */
#include "eng_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int eng_file_open(const char *path, eng_err *err)
{
    /* O_NONBLOCK: a FIFO opens at once instead of waiting for a writer; refused below */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return eng_err_set(err, ENG_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return eng_err_set(err, ENG_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return eng_err_set(err, ENG_E_IO, "%s: not a regular file (%s)", path,
                           S_ISDIR(st.st_mode)    ? "a directory"
                           : S_ISFIFO(st.st_mode) ? "a FIFO"
                           : S_ISCHR(st.st_mode)  ? "a character device"
                           : S_ISBLK(st.st_mode)  ? "a block device"
                           : S_ISSOCK(st.st_mode) ? "a socket"
                                                  : "not a file");
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return eng_err_set(err, ENG_E_IO, "%s: fcntl: %s", path, strerror(e));
    }
    return fd;
}

FILE *eng_file_fopen(const char *path, eng_err *err)
{
    int fd = eng_file_open(path, err);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        eng_err_set(err, ENG_E_IO, "%s: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}
