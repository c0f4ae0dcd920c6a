/* A temporary directory per unit test file: what test_*.c files share. */
#ifndef TG_TESTS_UNIT_TMPDIR_H
#define TG_TESTS_UNIT_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static inline int unit_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes dir and everything under it, links not followed. */
static inline int unit_rm_tree(const char *dir)
{
    return nftw(dir, unit_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
