/*
 * aosctl: administers an aosd installation through its store, without the
 * API, so that the first admin and the first API keys exist before aosd
 * ever ran.  Same configuration file, same store, same migrations as aosd.
 *
 * Its life, in order: parse arguments -> load the configuration -> resolve
 * the tenant -> (as root, on SQLite: become the owner of the database) ->
 * open the store, migrate or check the schema, sync the tenants -> run the
 * command -> exit 0 (done), 1 (failed), 2 (usage).
 *
 * Single-threaded, no event loop.  Secrets never reach stderr: passwords
 * are read from stdin and wiped, an API key is printed once on stdout, the
 * hashes and the conninfo are never printed at all.
 */
#include "config.h"

#include "auth/apikey.h"
#include "auth/password.h"
#include "conf.h"
#include "log.h"
#include "store/migrate.h"
#include "store/ops.h"
#include "store/store.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define DEFAULT_CONF AOSD_CONFDIR "/aosd.conf"
#define MAX_EXPIRES_DAYS 3650
#define MAX_KEY_NAME 100
#define DAY_MS (86400LL * 1000)
#define KEY_NAME_DEFAULT "aosctl"
#define EMAIL_BUF 256 /* aos_email_normalize accepts up to 254 bytes */
#define USER_PAGE 500
#define KEY_CREATE_ATTEMPTS 3
#define SYNC_ATTEMPTS 3
#define TIME_BUF 32

/* ------------------------------------------------------------ messages */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    fputs("aosctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* "2026-01-31T12:00:00Z" (UTC), or `none` for 0. */
static const char *fmt_time(int64_t ms, const char *none, char buf[TIME_BUF])
{
    if (ms <= 0)
        return none;
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, TIME_BUF, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return "?";
    return buf;
}

/* ------------------------------------------------------------ commands */

enum opt_bit {
    O_TENANT = 1u << 0,
    O_EMAIL = 1u << 1,
    O_ROLE = 1u << 2,
    O_EXPIRES = 1u << 3,
    O_NAME = 1u << 4,
    O_USER = 1u << 5,
};

struct ctl {
    const struct command *cmd;
    const char *conf_path;
    const char *tenant_arg;
    const char *email_arg;
    const char *role;
    const char *name;
    const char *user_arg;
    const char *positional; /* the one positional argument, if the command takes it */
    int expires_days;       /* 0 = never */
    unsigned given;         /* enum opt_bit of the options on the command line */

    struct aos_conf *conf;
    const struct aos_conf_tenant *tenant;
    struct aos_store *store;
};

struct command {
    const char *group;
    const char *verb;
    const char *synopsis; /* after "aosctl [-c FILE] GROUP VERB" */
    const char *summary;
    unsigned allowed; /* enum opt_bit */
    unsigned required;
    int positionals; /* exact number */
    int (*run)(struct ctl *ctl);
};

static int cmd_user_add(struct ctl *ctl);
static int cmd_user_list(struct ctl *ctl);
static int cmd_apikey_create(struct ctl *ctl);
static int cmd_apikey_list(struct ctl *ctl);
static int cmd_apikey_revoke(struct ctl *ctl);
static int cmd_tenant_list(struct ctl *ctl);

static const struct command commands[] = {
    {"user", "add", "--tenant T --email EMAIL --role ROLE",
     "create a user; the password is read from standard input", O_TENANT | O_EMAIL | O_ROLE,
     O_TENANT | O_EMAIL | O_ROLE, 0, cmd_user_add},
    {"user", "list", "--tenant T", "list the tenant's users", O_TENANT, O_TENANT, 0, cmd_user_list},
    {"apikey", "create", "--tenant T --role ROLE [--expires DAYS] [--name NAME] [--user EMAIL]",
     "create an API key and print it, once, on standard output",
     O_TENANT | O_ROLE | O_EXPIRES | O_NAME | O_USER, O_TENANT | O_ROLE, 0, cmd_apikey_create},
    {"apikey", "list", "--tenant T", "list the tenant's API keys (never their secrets)", O_TENANT, O_TENANT,
     0, cmd_apikey_list},
    {"apikey", "revoke", "--tenant T ID|PREFIX", "revoke an API key", O_TENANT, O_TENANT, 1,
     cmd_apikey_revoke},
    {"tenant", "list", "", "list the tenants known to the store", 0, 0, 0, cmd_tenant_list},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* Roles in rank order: a key never carries more than its user's role. */
static const char *const roles[] = {"user", "approver", "admin"};
#define NROLES (sizeof roles / sizeof roles[0])

static int role_rank(const char *role)
{
    for (size_t i = 0; i < NROLES; i++)
        if (strcmp(role, roles[i]) == 0)
            return (int)i + 1;
    return 0;
}

static const struct option global_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static const struct option command_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"help", no_argument, NULL, 'h'},
    {"tenant", required_argument, NULL, 't'},
    {"email", required_argument, NULL, 'e'},
    {"role", required_argument, NULL, 'r'},
    {"expires", required_argument, NULL, 'x'},
    {"name", required_argument, NULL, 'n'},
    {"user", required_argument, NULL, 'u'},
    {NULL, 0, NULL, 0},
};

/* getopt value -> option bit and the field of struct ctl it fills. */
static const struct {
    int val;
    unsigned bit;
    const char *name;
    size_t offset;
} option_fields[] = {
    {'t', O_TENANT, "--tenant", offsetof(struct ctl, tenant_arg)},
    {'e', O_EMAIL, "--email", offsetof(struct ctl, email_arg)},
    {'r', O_ROLE, "--role", offsetof(struct ctl, role)},
    {'x', O_EXPIRES, "--expires", 0},
    {'n', O_NAME, "--name", offsetof(struct ctl, name)},
    {'u', O_USER, "--user", offsetof(struct ctl, user_arg)},
};
#define NOPTION_FIELDS (sizeof option_fields / sizeof option_fields[0])

static void usage(FILE *out)
{
    fprintf(out, "Usage: aosctl [-c FILE] COMMAND [OPTIONS]\n"
                 "       aosctl --version | --help\n"
                 "\nCommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %s %s%s%s\n      %s\n", commands[i].group, commands[i].verb,
                commands[i].synopsis[0] != '\0' ? " " : "", commands[i].synopsis, commands[i].summary);
    fprintf(out,
            "\n"
            "  -c, --config FILE  aosd's configuration file (default %s)\n"
            "  -h, --help         print this help (or a command's, after it), then exit\n"
            "  -V, --version      print the version, then exit\n"
            "\n"
            "T is a tenant's name or id, as declared in the configuration.  ROLE is\n"
            "admin, approver or user.  user add reads one line, the password, from\n"
            "standard input (on a terminal it asks twice, without echo).\n"
            "Exit status: 0 done, 1 failed, 2 usage error.  See aosctl(1).\n",
            DEFAULT_CONF);
}

static void command_usage(FILE *out, const struct command *cmd)
{
    fprintf(out, "Usage: aosctl [-c FILE] %s %s%s%s\n  %s\n", cmd->group, cmd->verb,
            cmd->synopsis[0] != '\0' ? " " : "", cmd->synopsis, cmd->summary);
}

/* The word getopt refused: "-z", or "--zap" (long options leave optopt 0). */
static const char *bad_option_text(char **argv)
{
    static char shortopt[3];
    if (optopt != 0) {
        shortopt[0] = '-';
        shortopt[1] = (char)optopt;
        shortopt[2] = '\0';
        return shortopt;
    }
    return argv[optind - 1];
}

static int parse_expires(const char *text, int *days)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 1 || v > MAX_EXPIRES_DAYS)
        return -1;
    *days = (int)v;
    return 0;
}

/* The command's own options (argv[0] is the verb).  0 = run, 1 = done
 * (help printed), EXIT_USAGE = bad usage (message printed). */
static int parse_command(struct ctl *ctl, int argc, char **argv)
{
    const struct command *cmd = ctl->cmd;
    int c;

    optind = 0; /* glibc: full re-initialisation for a second argv */
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:h", command_options, NULL)) != -1) {
        if (c == 'c') {
            ctl->conf_path = optarg;
            continue;
        }
        if (c == 'h') {
            command_usage(stdout, cmd);
            return 1;
        }
        if (c == ':') {
            say("%s %s: option '%s' needs a value", cmd->group, cmd->verb, argv[optind - 1]);
            return EXIT_USAGE;
        }
        size_t i;
        for (i = 0; i < NOPTION_FIELDS && option_fields[i].val != c; i++)
            ;
        if (c == '?' || i == NOPTION_FIELDS) {
            say("%s %s: unknown option '%s'", cmd->group, cmd->verb, bad_option_text(argv));
            command_usage(stderr, cmd);
            return EXIT_USAGE;
        }
        if (!(cmd->allowed & option_fields[i].bit)) {
            say("%s %s: %s does not apply to this command", cmd->group, cmd->verb, option_fields[i].name);
            command_usage(stderr, cmd);
            return EXIT_USAGE;
        }
        if (ctl->given & option_fields[i].bit) {
            say("%s %s: %s given twice", cmd->group, cmd->verb, option_fields[i].name);
            return EXIT_USAGE;
        }
        ctl->given |= option_fields[i].bit;
        if (option_fields[i].bit == O_EXPIRES) {
            if (parse_expires(optarg, &ctl->expires_days) != 0) {
                say("%s %s: --expires takes a number of days from 1 to %d, not '%s'", cmd->group, cmd->verb,
                    MAX_EXPIRES_DAYS, optarg);
                return EXIT_USAGE;
            }
        } else {
            *(const char **)(void *)((char *)ctl + option_fields[i].offset) = optarg;
        }
    }
    for (size_t i = 0; i < NOPTION_FIELDS; i++) {
        if ((cmd->required & option_fields[i].bit) && !(ctl->given & option_fields[i].bit)) {
            say("%s %s: %s is required", cmd->group, cmd->verb, option_fields[i].name);
            command_usage(stderr, cmd);
            return EXIT_USAGE;
        }
    }
    if (argc - optind != cmd->positionals) {
        say("%s %s: expected %d argument%s, got %d", cmd->group, cmd->verb, cmd->positionals,
            cmd->positionals == 1 ? "" : "s", argc - optind);
        command_usage(stderr, cmd);
        return EXIT_USAGE;
    }
    if (cmd->positionals == 1)
        ctl->positional = argv[optind];
    if (ctl->role != NULL && role_rank(ctl->role) == 0) {
        say("%s %s: --role must be admin, approver or user, not '%s'", cmd->group, cmd->verb, ctl->role);
        return EXIT_USAGE;
    }
    if (ctl->name != NULL) {
        size_t len = strlen(ctl->name);
        bool printable = len > 0 && len <= MAX_KEY_NAME;
        for (size_t i = 0; printable && i < len; i++)
            printable = (unsigned char)ctl->name[i] >= 0x20 && ctl->name[i] != 0x7f;
        if (!printable) {
            say("%s %s: --name must be 1 to %d characters without control characters", cmd->group, cmd->verb,
                MAX_KEY_NAME);
            return EXIT_USAGE;
        }
    }
    return 0;
}

/* Global options, then GROUP VERB, then the command's options. */
static int parse_args(struct ctl *ctl, int argc, char **argv)
{
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:c:hV", global_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            ctl->conf_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
            printf("aosctl (aosd) %s\n", PACKAGE_VERSION);
            return 1;
        case ':':
            say("option '%s' needs a value", argv[optind - 1]);
            return EXIT_USAGE;
        default:
            say("unknown option '%s' (aosctl --help lists them)", bad_option_text(argv));
            return EXIT_USAGE;
        }
    }
    if (argc - optind < 2) {
        if (argc - optind == 0)
            say("no command given");
        else
            say("'%s' needs a command after it", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *group = argv[optind], *verb = argv[optind + 1];
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].group, group) == 0 && strcmp(commands[i].verb, verb) == 0)
            ctl->cmd = &commands[i];
    if (ctl->cmd == NULL) {
        say("unknown command '%s %s' (aosctl --help lists them)", group, verb);
        return EXIT_USAGE;
    }
    return parse_command(ctl, argc - optind - 1, argv + optind + 1);
}

/* ------------------------------------------------------------ store */

static void print_applied(void *arg, int version, const char *name)
{
    (void)arg;
    fprintf(stderr, "aosctl: applied migration %04d_%s\n", version, name);
}

static int sync_tenants_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    const struct aos_conf *conf = arg;
    return aos_store_tenants_sync(tx, conf->tenants, conf->ntenants, err, errlen);
}

static int store_open(struct ctl *ctl)
{
    char err[512] = "";
    int current = 0, latest = 0, rc;

    ctl->store = aos_store_new(&ctl->conf->store);
    if (ctl->store == NULL) {
        say("cannot create the store (driver '%s')", ctl->conf->store.driver);
        return -1;
    }
    rc = aos_store_connect(ctl->store, err, sizeof err);
    if (rc != AOS_DB_OK) {
        say("cannot open the %s store: %s", aos_store_driver_name(ctl->store), err);
        return -1;
    }
    rc = aos_migrate_status(ctl->store, &current, &latest, err, sizeof err);
    if (rc == AOS_DB_OK && current < latest && ctl->conf->store.auto_migrate)
        rc = aos_migrate_up(ctl->store, 0, print_applied, NULL, err, sizeof err);
    if (rc == AOS_DB_OK)
        rc = aos_migrate_check(ctl->store, err, sizeof err);
    if (rc != AOS_DB_OK) {
        say("%s", err);
        return -1;
    }
    /* Another process syncing the same tenants at this moment can make
     * our insert collide with theirs; the next attempt finds the row. */
    for (int i = 0; i < SYNC_ATTEMPTS; i++) {
        rc = aos_store_transact(ctl->store, true, sync_tenants_tx, ctl->conf, err, sizeof err);
        if (rc != AOS_DB_CONSTRAINT)
            break;
    }
    if (rc != AOS_DB_OK) {
        say("cannot sync the tenants from the configuration into the store: %s", err);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ passwords */

static struct termios saved_tty;
static volatile sig_atomic_t tty_echo_off;

/* Ctrl-C at the prompt must not leave the terminal without echo. */
static void restore_tty_and_die(int sig)
{
    if (tty_echo_off)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    raise(sig); /* SA_RESETHAND: the default action now */
}

/* Reads one line (without its newline, or a CR before it) into buf.  With
 * read(2), one byte at a time: no copy of the password stays in a stdio
 * buffer, and nothing after the line is consumed.  0 = a line, 1 = longer
 * than cap, -1 = end of input before any byte, -2 = read error. */
static int read_line(int fd, char *buf, size_t cap, size_t *len)
{
    size_t n = 0;
    bool any = false;

    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -2;
        if (r == 0)
            break;
        any = true;
        if (ch == '\n')
            break;
        if (n == cap)
            return 1;
        buf[n++] = ch;
    }
    if (!any)
        return -1;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    *len = n;
    return 0;
}

static int prompt_line(const char *prompt, char *buf, size_t cap, size_t *len)
{
    struct termios quiet;
    struct sigaction sa, old[4];
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    int rc;

    if (tcgetattr(STDIN_FILENO, &saved_tty) != 0)
        return -2;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = restore_tty_and_die;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < 4; i++)
        sigaction(sigs[i], &sa, &old[i]);
    quiet = saved_tty;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK);
    quiet.c_lflag |= ECHONL;
    tty_echo_off = 1;
    /* Echo off before the prompt: whatever is typed after seeing it stays
     * hidden, and TCSAFLUSH drops anything typed ahead of it. */
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0) {
        rc = -2;
        goto out;
    }
    fputs(prompt, stderr);
    fflush(stderr);
    rc = read_line(STDIN_FILENO, buf, cap, len);
out:
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    tty_echo_off = 0;
    for (size_t i = 0; i < 4; i++)
        sigaction(sigs[i], &old[i], NULL);
    return rc;
}

static void wipe_free(char *p, size_t len)
{
    if (p != NULL) {
        explicit_bzero(p, len);
        free(p);
    }
}

/* Reads the password (terminal: twice, no echo; otherwise one line) and
 * checks the policy.  *pw is malloc'd with *cap bytes: wipe_free it. */
static int read_password(const struct ctl *ctl, const char *email, char **pw, size_t *cap, size_t *len)
{
    const struct aos_conf_auth *a = &ctl->conf->auth;
    char prompt[EMAIL_BUF + 32], err[256];
    char *again = NULL;
    size_t again_len = 0;
    int rc;

    /* Room for max_length four-byte code points, plus one byte that tells
     * a too long password from one that fits exactly. */
    *cap = (size_t)a->password_max_length * 4 + 2;
    *pw = malloc(*cap);
    again = malloc(*cap);
    if (*pw == NULL || again == NULL) {
        say("out of memory");
        rc = -1;
        goto out;
    }
    bool tty = isatty(STDIN_FILENO) != 0;
    snprintf(prompt, sizeof prompt, "Password for %s: ", email);
    rc = tty ? prompt_line(prompt, *pw, *cap - 1, len) : read_line(STDIN_FILENO, *pw, *cap - 1, len);
    if (rc == 1) {
        say("password must be at most %d characters", a->password_max_length);
        goto fail;
    }
    if (rc == -1) {
        say("no password on standard input: give it as one line, e.g. printf '%%s\\n' \"$PW\" | aosctl ...");
        goto fail;
    }
    if (rc != 0) {
        say("cannot read the password from standard input: %s", strerror(errno));
        goto fail;
    }
    if (aos_password_policy_check(*pw, *len, a->password_min_length, a->password_max_length, err,
                                  sizeof err) != 0) {
        say("%s (auth.password_min_length = %d, auth.password_max_length = %d)", err, a->password_min_length,
            a->password_max_length);
        goto fail;
    }
    if (tty) {
        rc = prompt_line("Repeat the password: ", again, *cap - 1, &again_len);
        if (rc != 0 || again_len != *len || memcmp(again, *pw, *len) != 0) {
            say("the passwords do not match");
            goto fail;
        }
    }
    rc = 0;
    goto out;
fail:
    rc = -1;
out:
    wipe_free(again, *cap);
    return rc;
}

/* ------------------------------------------------------------ tenants */

static const struct aos_conf_tenant *tenant_resolve(const struct aos_conf *conf, const char *arg)
{
    char id[AOS_ID_LEN];
    const struct aos_conf_tenant *t = NULL;
    /* Ids in upper case are ids too; a name shaped like an id is still a name. */
    if (aos_store_id_norm(arg, id))
        t = aos_conf_tenant_find(conf, id);
    return t != NULL ? t : aos_conf_tenant_find(conf, arg);
}

/* ------------------------------------------------------------ user add */

struct user_add {
    const char *tenant_id;
    const char *email;
    const char *hash; /* NULL: only check that the e-mail is free */
    const char *role;
    char id[AOS_ID_LEN];
    bool duplicate;
};

static int user_add_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct user_add *ua = arg;
    struct aos_user existing;

    ua->duplicate = false;
    int rc = aos_store_user_get_by_email(tx, ua->tenant_id, ua->email, &existing, err, errlen);
    if (rc == AOS_DB_OK) {
        aos_user_clear(&existing);
        ua->duplicate = true;
        return AOS_DB_CONSTRAINT;
    }
    if (rc != AOS_DB_NOT_FOUND || ua->hash == NULL)
        return rc == AOS_DB_NOT_FOUND ? AOS_DB_OK : rc;
    return aos_store_user_create(tx, ua->tenant_id, ua->email, ua->hash, ua->role, ua->id, err, errlen);
}

static int cmd_user_add(struct ctl *ctl)
{
    char email[EMAIL_BUF], err[512] = "";
    char *pw = NULL, *hash = NULL;
    size_t cap = 0, len = 0;
    int rc = EXIT_FAILURE;

    if (aos_email_normalize(ctl->email_arg, email, sizeof email, err, sizeof err) != 0) {
        say("invalid --email '%s': %s", ctl->email_arg, err);
        goto out;
    }
    struct user_add ua = {.tenant_id = ctl->tenant->id, .email = email, .role = ctl->role};
    /* Check the e-mail before asking for a password nobody will use. */
    int st = aos_store_transact(ctl->store, false, user_add_tx, &ua, err, sizeof err);
    if (st == AOS_DB_OK) {
        if (read_password(ctl, email, &pw, &cap, &len) != 0)
            goto out; /* it said why */
        const struct aos_conf_argon2 *c = &ctl->conf->auth.argon2;
        struct aos_argon2_params params = {(uint32_t)c->t_cost, (uint32_t)c->m_cost_kib,
                                           (uint32_t)c->parallelism};
        if (aos_password_hash(&params, pw, len, &hash, err, sizeof err) != 0) {
            say("cannot hash the password: %s", err);
            goto out;
        }
        ua.hash = hash;
        st = aos_store_transact(ctl->store, true, user_add_tx, &ua, err, sizeof err);
    }
    if (ua.duplicate) {
        say("a user with e-mail '%s' already exists in tenant '%s'", email, ctl->tenant->name);
        goto out;
    }
    if (st != AOS_DB_OK) {
        say("cannot create the user: %s", err);
        goto out;
    }
    printf("%s\t%s\n", ua.id, email);
    rc = EXIT_SUCCESS;
out:
    wipe_free(pw, cap);
    if (hash != NULL)
        wipe_free(hash, strlen(hash));
    return rc;
}

/* ------------------------------------------------------------ user list */

struct user_page {
    const char *tenant_id;
    char cursor[AOS_CURSOR_LEN];
    char next[AOS_CURSOR_LEN];
    struct aos_user *users;
    size_t n;
};

static int user_page_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct user_page *p = arg;
    aos_users_free(p->users, p->n); /* a retried attempt starts over */
    p->users = NULL;
    p->n = 0;
    return aos_store_user_list(tx, p->tenant_id, p->cursor, USER_PAGE, &p->users, &p->n, p->next, err,
                               errlen);
}

static int cmd_user_list(struct ctl *ctl)
{
    struct user_page p = {.tenant_id = ctl->tenant->id};
    char err[512] = "", t[TIME_BUF];

    do {
        int st = aos_store_transact(ctl->store, false, user_page_tx, &p, err, sizeof err);
        if (st != AOS_DB_OK) {
            say("cannot list the users: %s", err);
            aos_users_free(p.users, p.n);
            return EXIT_FAILURE;
        }
        for (size_t i = 0; i < p.n; i++)
            printf("%s\t%s\t%s\t%s\n", p.users[i].id, p.users[i].email, p.users[i].role,
                   fmt_time(p.users[i].created_at, "-", t));
        aos_users_free(p.users, p.n);
        p.users = NULL;
        p.n = 0;
        memcpy(p.cursor, p.next, sizeof p.cursor);
    } while (p.cursor[0] != '\0');
    return EXIT_SUCCESS;
}

/* ------------------------------------------------------------ apikey create */

struct key_create {
    const char *tenant_id;
    const char *user_email; /* NULL: a service key */
    const char *role;
    const char *name;
    int64_t expires_at;
    char key[AOS_APIKEY_LEN + 1];
    char prefix[AOS_APIKEY_PREFIX_LEN + 1];
    char hash[AOS_APIKEY_HASH_LEN + 1];
    char id[AOS_ID_LEN];
    char user_role[AOS_ROLE_LEN];
    enum { KC_OK, KC_NO_USER, KC_ROLE_TOO_HIGH } refused;
};

static int key_create_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct key_create *kc = arg;
    struct aos_user u;
    char user_id[AOS_ID_LEN];

    kc->refused = KC_OK;
    if (kc->user_email != NULL) {
        int rc = aos_store_user_get_by_email(tx, kc->tenant_id, kc->user_email, &u, err, errlen);
        if (rc == AOS_DB_NOT_FOUND)
            kc->refused = KC_NO_USER;
        if (rc != AOS_DB_OK)
            return rc;
        memcpy(user_id, u.id, sizeof user_id);
        snprintf(kc->user_role, sizeof kc->user_role, "%s", u.role);
        aos_user_clear(&u);
        if (role_rank(kc->role) > role_rank(kc->user_role)) {
            kc->refused = KC_ROLE_TOO_HIGH;
            return AOS_DB_CONSTRAINT;
        }
    }
    struct aos_api_key_spec spec = {
        .user_id = kc->user_email != NULL ? user_id : NULL,
        .name = kc->name,
        .prefix = kc->prefix,
        .secret_hash = kc->hash,
        .role = kc->role,
        .expires_at = kc->expires_at,
    };
    return aos_store_apikey_create(tx, kc->tenant_id, &spec, kc->id, err, errlen);
}

static int key_revoke_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    const struct key_create *kc = arg;
    return aos_store_apikey_revoke(tx, kc->tenant_id, kc->id, NULL, err, errlen);
}

static int cmd_apikey_create(struct ctl *ctl)
{
    char email[EMAIL_BUF], err[512] = "", t[TIME_BUF];
    struct key_create kc = {
        .tenant_id = ctl->tenant->id,
        .role = ctl->role,
        .name = ctl->name != NULL ? ctl->name : KEY_NAME_DEFAULT,
    };
    int st = AOS_DB_ERROR, rc = EXIT_FAILURE;

    if (ctl->user_arg != NULL) {
        if (aos_email_normalize(ctl->user_arg, email, sizeof email, err, sizeof err) != 0) {
            say("invalid --user '%s': %s", ctl->user_arg, err);
            goto out;
        }
        kc.user_email = email;
    }
    if (ctl->expires_days > 0)
        kc.expires_at = aos_store_now_ms() + (int64_t)ctl->expires_days * DAY_MS;
    /* A new prefix per attempt: the only constraint left to hit once the
     * user is found is a prefix another key already has. */
    for (int i = 0; i < KEY_CREATE_ATTEMPTS; i++) {
        if (aos_apikey_generate(kc.key, kc.prefix, kc.hash) != 0) {
            say("cannot generate an API key: no randomness available");
            goto out;
        }
        st = aos_store_transact(ctl->store, true, key_create_tx, &kc, err, sizeof err);
        if (st != AOS_DB_CONSTRAINT || kc.refused != KC_OK)
            break;
    }
    if (kc.refused == KC_NO_USER) {
        say("no user with e-mail '%s' in tenant '%s'", email, ctl->tenant->name);
        goto out;
    }
    if (kc.refused == KC_ROLE_TOO_HIGH) {
        say("a key cannot carry more than its user's role: %s is '%s', the key asks for '%s'", email,
            kc.user_role, kc.role);
        goto out;
    }
    if (st != AOS_DB_OK) {
        say("cannot create the API key: %s", err);
        goto out;
    }
    /* The key exists only if somebody received it: if stdout fails, take
     * it back rather than leave a valid key nobody has seen. */
    signal(SIGPIPE, SIG_IGN);
    printf("%s\n", kc.key);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno;
        st = aos_store_transact(ctl->store, true, key_revoke_tx, &kc, err, sizeof err);
        say("cannot write the key to standard output (%s); key %s %s", strerror(e), kc.id,
            st == AOS_DB_OK ? "revoked" : "could NOT be revoked: revoke it with apikey revoke");
        goto out;
    }
    fprintf(stderr,
            "id: %s\nprefix: %s\nrole: %s\nuser: %s\nname: %s\nexpires: %s\n"
            "aosctl: the key is shown only this once; it cannot be recovered\n",
            kc.id, kc.prefix, kc.role, kc.user_email != NULL ? kc.user_email : "-", kc.name,
            fmt_time(kc.expires_at, "never", t));
    rc = EXIT_SUCCESS;
out:
    explicit_bzero(kc.key, sizeof kc.key);
    return rc;
}

/* ------------------------------------------------------------ apikey list */

struct key_list {
    const char *tenant_id;
    struct aos_api_key *keys;
    size_t n;
    char (*emails)[EMAIL_BUF]; /* per key: its user's e-mail, or "" */
};

static void key_list_clear(struct key_list *kl)
{
    aos_api_keys_free(kl->keys, kl->n);
    free(kl->emails);
    kl->keys = NULL;
    kl->emails = NULL;
    kl->n = 0;
}

static int key_list_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct key_list *kl = arg;
    int rc;

    key_list_clear(kl); /* a retried attempt starts over */
    rc = aos_store_apikey_list(tx, kl->tenant_id, NULL, true, &kl->keys, &kl->n, err, errlen);
    if (rc != AOS_DB_OK || kl->n == 0)
        return rc;
    kl->emails = calloc(kl->n, sizeof *kl->emails);
    if (kl->emails == NULL) {
        snprintf(err, errlen, "out of memory");
        return AOS_DB_ERROR;
    }
    for (size_t i = 0; i < kl->n; i++) {
        struct aos_user u;
        if (kl->keys[i].user_id[0] == '\0')
            continue;
        rc = aos_store_user_get(tx, kl->tenant_id, kl->keys[i].user_id, &u, err, errlen);
        if (rc == AOS_DB_NOT_FOUND)
            continue;
        if (rc != AOS_DB_OK)
            return rc;
        snprintf(kl->emails[i], EMAIL_BUF, "%s", u.email);
        aos_user_clear(&u);
    }
    return AOS_DB_OK;
}

static const char *key_status(const struct aos_api_key *k, int64_t now)
{
    if (k->revoked_at > 0)
        return "revoked";
    if (k->expires_at > 0 && k->expires_at <= now)
        return "expired";
    return "active";
}

static int cmd_apikey_list(struct ctl *ctl)
{
    struct key_list kl = {.tenant_id = ctl->tenant->id};
    char err[512] = "", t1[TIME_BUF], t2[TIME_BUF], t3[TIME_BUF];
    int64_t now = aos_store_now_ms();

    int st = aos_store_transact(ctl->store, false, key_list_tx, &kl, err, sizeof err);
    if (st != AOS_DB_OK) {
        say("cannot list the API keys: %s", err);
        key_list_clear(&kl);
        return EXIT_FAILURE;
    }
    for (size_t i = 0; i < kl.n; i++) {
        const struct aos_api_key *k = &kl.keys[i];
        printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k->id, k->prefix, k->role, key_status(k, now),
               fmt_time(k->created_at, "-", t1), fmt_time(k->expires_at, "never", t2),
               fmt_time(k->last_used_at, "never", t3), kl.emails[i][0] != '\0' ? kl.emails[i] : "-",
               k->name != NULL ? k->name : "");
    }
    key_list_clear(&kl);
    return EXIT_SUCCESS;
}

/* ------------------------------------------------------------ apikey revoke */

struct key_revoke {
    const char *tenant_id;
    const char *which; /* id or prefix */
    char id[AOS_ID_LEN];
    int64_t was_revoked_at;
    bool found;
};

static int key_find_revoke_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct key_revoke *kr = arg;
    struct aos_api_key *keys = NULL;
    size_t n = 0;
    int rc;

    kr->found = false;
    /* By id if it is one, else by prefix among the tenant's keys: the
     * prefix lookup of the store is not tenant-scoped, and must stay the
     * API-key authenticator's alone. */
    if (aos_store_id_norm(kr->which, kr->id)) {
        struct aos_api_key k;
        rc = aos_store_apikey_get(tx, kr->tenant_id, kr->id, &k, err, errlen);
        if (rc == AOS_DB_OK) {
            kr->found = true;
            kr->was_revoked_at = k.revoked_at;
            aos_api_key_clear(&k);
        } else if (rc != AOS_DB_NOT_FOUND) {
            return rc;
        }
    } else {
        rc = aos_store_apikey_list(tx, kr->tenant_id, NULL, true, &keys, &n, err, errlen);
        if (rc != AOS_DB_OK)
            return rc;
        for (size_t i = 0; i < n && !kr->found; i++) {
            if (keys[i].prefix != NULL && strcmp(keys[i].prefix, kr->which) == 0) {
                kr->found = true;
                kr->was_revoked_at = keys[i].revoked_at;
                memcpy(kr->id, keys[i].id, sizeof kr->id);
            }
        }
        aos_api_keys_free(keys, n);
    }
    if (!kr->found)
        return AOS_DB_NOT_FOUND;
    return aos_store_apikey_revoke(tx, kr->tenant_id, kr->id, NULL, err, errlen);
}

static int cmd_apikey_revoke(struct ctl *ctl)
{
    struct key_revoke kr = {.tenant_id = ctl->tenant->id, .which = ctl->positional};
    char err[512] = "", t[TIME_BUF];

    int st = aos_store_transact(ctl->store, true, key_find_revoke_tx, &kr, err, sizeof err);
    if (st == AOS_DB_NOT_FOUND && !kr.found) {
        say("no API key '%s' in tenant '%s' (give its id or prefix: see apikey list)", ctl->positional,
            ctl->tenant->name);
        return EXIT_FAILURE;
    }
    if (st != AOS_DB_OK) {
        say("cannot revoke the API key: %s", err);
        return EXIT_FAILURE;
    }
    if (kr.was_revoked_at > 0)
        say("key %s was already revoked at %s", kr.id, fmt_time(kr.was_revoked_at, "-", t));
    printf("revoked\t%s\n", kr.id);
    return EXIT_SUCCESS;
}

/* ------------------------------------------------------------ tenant list */

struct tenant_list {
    struct aos_tenant *tenants;
    size_t n;
};

static int tenant_list_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct tenant_list *tl = arg;
    aos_tenants_free(tl->tenants, tl->n);
    tl->tenants = NULL;
    tl->n = 0;
    return aos_store_tenant_list(tx, true, &tl->tenants, &tl->n, err, errlen);
}

static int cmd_tenant_list(struct ctl *ctl)
{
    struct tenant_list tl = {0};
    char err[512] = "";

    int st = aos_store_transact(ctl->store, false, tenant_list_tx, &tl, err, sizeof err);
    if (st != AOS_DB_OK) {
        say("cannot list the tenants: %s", err);
        aos_tenants_free(tl.tenants, tl.n);
        return EXIT_FAILURE;
    }
    for (size_t i = 0; i < tl.n; i++)
        printf("%s\t%s\t%s\n", tl.tenants[i].id, tl.tenants[i].name,
               tl.tenants[i].active ? "active" : "inactive");
    aos_tenants_free(tl.tenants, tl.n);
    return EXIT_SUCCESS;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    struct ctl ctl = {.conf_path = DEFAULT_CONF};
    struct aos_conf_errors errs = {0};
    int rc = parse_args(&ctl, argc, argv);

    if (rc != 0)
        return rc == 1 ? EXIT_SUCCESS : EXIT_USAGE;
    rc = EXIT_FAILURE;
    /* The store's own warnings (reconnect notices) repeat what we say. */
    aos_log_configure(AOS_LVL_ERROR, AOS_LOG_TEXT);

    ctl.conf = aos_conf_load(ctl.conf_path, &errs);
    if (ctl.conf == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        say("cannot use the configuration %s: fix the errors above", ctl.conf_path);
        goto out;
    }
    if (ctl.tenant_arg != NULL) {
        ctl.tenant = tenant_resolve(ctl.conf, ctl.tenant_arg);
        if (ctl.tenant == NULL) {
            say("unknown tenant '%s' (tenants are declared in the configuration)", ctl.tenant_arg);
            goto out;
        }
    }
    char owner_err[256];
    if (aos_store_become_owner(&ctl.conf->store, owner_err, sizeof owner_err) != 0) {
        say("%s", owner_err);
        goto out;
    }
    if (store_open(&ctl) != 0)
        goto out;
    rc = ctl.cmd->run(&ctl);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        say("cannot write to standard output: %s", strerror(errno));
        rc = EXIT_FAILURE;
    }
out:
    aos_store_free(ctl.store);
    aos_conf_free(ctl.conf);
    aos_conf_errors_free(&errs);
    return rc;
}
