/*
 * libpq, loaded when the first PostgreSQL connection is opened rather than
 * linked into aosd.
 *
 * Why: libpq pulls in gnutls, Kerberos, LDAP, SASL, p11-kit and a dozen
 * more libraries -- 3+ MiB of resident memory and start-up relocation work
 * in every aosd, although the default store (SQLite) never uses any of it.
 * systemd loads its optional libraries the same way.  The Debian package
 * depends on libpq5 explicitly, since dpkg-shlibdeps cannot see a dlopen().
 *
 * Only core/store/pgsql.c includes this header: after it, the PQ* names in
 * that file call through the table below.  The prototypes (and so the
 * types checked at every call) are libpq-fe.h's own.
 */
#ifndef AOS_STORE_LIBPQ_DL_H
#define AOS_STORE_LIBPQ_DL_H

#include <stddef.h>

#include <libpq-fe.h>

/* Every libpq function the driver calls. */
#define AOS_LIBPQ_FUNCTIONS(X)                                                                                 \
    X(PQclear) X(PQcmdStatus) X(PQcmdTuples) X(PQconnectdbParams) X(PQconninfoFree) X(PQconninfoParse) X(PQdb)  \
    X(PQdescribePrepared) X(PQerrorMessage) X(PQexec) X(PQexecParams) X(PQexecPrepared) X(PQfinish)             \
    X(PQfreemem) X(PQgetisnull) X(PQgetlength) X(PQgetvalue) X(PQhost) X(PQnfields) X(PQnparams) X(PQntuples)    \
    X(PQport) X(PQprepare) X(PQresultErrorField) X(PQresultStatus) X(PQsetNoticeProcessor) X(PQstatus)         \
    X(PQtransactionStatus)

struct aos_libpq {
#define AOS_LIBPQ_FIELD(name) __typeof__(name) *name;
    AOS_LIBPQ_FUNCTIONS(AOS_LIBPQ_FIELD)
#undef AOS_LIBPQ_FIELD
};

/* Filled once by aos_libpq_load; read-only afterwards. */
extern struct aos_libpq aos_libpq;

/* Loads libpq.so.5 and resolves every function, once per process: after
 * a success later calls return at once; after a failure the next call
 * tries again (the library may have been installed since).  Thread-safe.
 * 0, or -1 with err naming the library and what failed. */
int aos_libpq_load(char *err, size_t errlen);

#ifndef AOS_LIBPQ_DL_IMPL
#define PQclear aos_libpq.PQclear
#define PQcmdStatus aos_libpq.PQcmdStatus
#define PQcmdTuples aos_libpq.PQcmdTuples
#define PQconnectdbParams aos_libpq.PQconnectdbParams
#define PQconninfoFree aos_libpq.PQconninfoFree
#define PQconninfoParse aos_libpq.PQconninfoParse
#define PQdb aos_libpq.PQdb
#define PQdescribePrepared aos_libpq.PQdescribePrepared
#define PQerrorMessage aos_libpq.PQerrorMessage
#define PQexec aos_libpq.PQexec
#define PQexecParams aos_libpq.PQexecParams
#define PQexecPrepared aos_libpq.PQexecPrepared
#define PQfinish aos_libpq.PQfinish
#define PQfreemem aos_libpq.PQfreemem
#define PQgetisnull aos_libpq.PQgetisnull
#define PQgetlength aos_libpq.PQgetlength
#define PQgetvalue aos_libpq.PQgetvalue
#define PQhost aos_libpq.PQhost
#define PQnfields aos_libpq.PQnfields
#define PQnparams aos_libpq.PQnparams
#define PQntuples aos_libpq.PQntuples
#define PQport aos_libpq.PQport
#define PQprepare aos_libpq.PQprepare
#define PQresultErrorField aos_libpq.PQresultErrorField
#define PQresultStatus aos_libpq.PQresultStatus
#define PQsetNoticeProcessor aos_libpq.PQsetNoticeProcessor
#define PQstatus aos_libpq.PQstatus
#define PQtransactionStatus aos_libpq.PQtransactionStatus
#endif

#endif
