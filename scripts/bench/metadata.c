/*
 * Metadata benchmark for scripts/bench.sh: in DIR, BATCHES batches of FILES files each
 * (default 4 x 5000): create every file of the batch with open(O_CREAT|O_WRONLY), a
 * 1 KiB write and close, then stat every one, then unlink every one. Prints the total
 * number of files over the total time (CLOCK_MONOTONIC), as "files/s N".
 *
 *   gcc -O2 -o metadata metadata.c && ./metadata DIR [BATCHES [FILES]]
 *
 * Exits 1, naming the call and the file, at the first call that fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what, const char *name)
{
    fprintf(stderr, "metadata: %s %s: %s\n", what, name, strerror(errno));
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long arg(int argc, char **argv, int i, long dflt)
{
    if (argc <= i)
        return dflt;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end != '\0' || v <= 0) {
        fprintf(stderr, "metadata: not a positive number: %s\n", argv[i]);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: metadata DIR [BATCHES [FILES_PER_BATCH]]\n");
        return 2;
    }
    long batches = arg(argc, argv, 2, 4);
    long files = arg(argc, argv, 3, 5000);
    int dfd = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (dfd < 0)
        die("open", argv[1]);

    char data[1024];
    memset(data, 'm', sizeof data);
    char name[48];
    struct stat st;

    double start = now();
    for (long b = 0; b < batches; b++) {
        for (long i = 0; i < files; i++) {
            snprintf(name, sizeof name, "f%ld.%ld", b, i);
            int fd = openat(dfd, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
            if (fd < 0)
                die("open", name);
            if (write(fd, data, sizeof data) != (ssize_t)sizeof data)
                die("write", name);
            if (close(fd) != 0)
                die("close", name);
        }
        for (long i = 0; i < files; i++) {
            snprintf(name, sizeof name, "f%ld.%ld", b, i);
            if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                die("stat", name);
            if (st.st_size != (off_t)sizeof data) {
                errno = EIO;
                die("stat (wrong size)", name);
            }
        }
        for (long i = 0; i < files; i++) {
            snprintf(name, sizeof name, "f%ld.%ld", b, i);
            if (unlinkat(dfd, name, 0) != 0)
                die("unlink", name);
        }
    }
    double secs = now() - start;
    printf("files/s %.0f\n", (double)(batches * files) / secs);
    return 0;
}
