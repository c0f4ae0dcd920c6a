#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "admin/admin.h"
#include "core/log.h"

enum tg_status admin_drop_privileges(const char *user)
{
    if (user == NULL)
        return TG_OK;
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        log_err("event=privilege_drop_failed user=%s error=\"no such user\"", user);
        return TG_E_CONFIG;
    }
    if (getuid() != 0 && geteuid() != 0) {
        if (geteuid() == pw->pw_uid)
            goto nnp;
        log_err("event=privilege_drop_failed user=%s error=\"not running as root; start as root "
                "or remove user:\"",
                user);
        return TG_E_CONFIG;
    }
    /* Supplementary groups first, then the group, then the user: once the
     * uid is gone, the others can no longer be changed. */
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        log_err("event=privilege_drop_failed user=%s error=\"%s\"", user, strerror(errno));
        return TG_E_INTERNAL;
    }
    /* A root that can come back is no drop at all. */
    if (setuid(0) == 0 || getuid() != pw->pw_uid || geteuid() != pw->pw_uid) {
        log_err("event=privilege_drop_failed user=%s error=\"root could be regained\"", user);
        return TG_E_INTERNAL;
    }
nnp:
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        log_err("event=privilege_drop_failed user=%s error=\"PR_SET_NO_NEW_PRIVS: %s\"", user,
                strerror(errno));
        return TG_E_INTERNAL;
    }
    return TG_OK;
}
