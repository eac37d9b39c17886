/* Scratch directories named after the process that made them (<prefix>-<pid>-XXXXXX,
 * as mkdtemp fills them), so that whoever comes next can tell those of processes that
 * died before cleaning up (killed mid-compile, a crashing candidate) and remove them. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

const char *ib__tmp_dir(void) {
    const char *t = getenv("TMPDIR");
    return t && t[0] == '/' ? t : "/tmp";
}

void ib__parent_dir(const char *path, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash) snprintf(buf, cap, ".");
    else if (slash == buf) buf[1] = '\0';
    else *slash = '\0';
}

void ib__sweep_dead_scratch(const char *parent, const char *prefix, void (*remove)(const char *path)) {
    DIR *d = opendir(parent);
    if (!d) return;
    size_t plen = strlen(prefix);
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, plen) != 0 || e->d_name[plen] != '-') continue;
        long pid = 0;
        char rest[16];
        if (sscanf(e->d_name + plen + 1, "%ld-%15s", &pid, rest) != 2 || pid <= 0 ||
            strlen(rest) != 6)
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours */
        int len = snprintf(path, sizeof path, "%s/%s", parent, e->d_name);
        if (len > 0 && (size_t)len < sizeof path) remove(path);
    }
    closedir(d);
}
