#include "core/status.h"

const char *tg_status_name(enum tg_status st)
{
    switch (st) {
    case TG_OK:
        return "ok";
    case TG_E_AGAIN:
        return "again";
    case TG_E_CLOSED:
        return "closed";
    case TG_E_PROTO:
        return "protocol";
    case TG_E_CONFIG:
        return "config";
    case TG_E_NOMEM:
        return "nomem";
    case TG_E_INTERNAL:
        return "internal";
    case TG_E_TIMEOUT:
        return "timeout";
    case TG_E_RESET:
        return "reset";
    }
    return "unknown";
}
