/* walltime: runs a command with its stdout discarded and prints its wall
 * time (fork to exit, CLOCK_MONOTONIC) as one sample line. Used for the
 * "list" rows, where a shell's own clock (a `date` process per reading)
 * would add more than it measures. A failing command is an error. */
#include "common.h"
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *usage = "--measure NAME --impl NAME [--note TEXT] -- COMMAND [ARGS...]";

int main(int argc, char **argv)
{
    prog_name = "walltime";
    int dash = 1;
    while (dash < argc && strcmp(argv[dash], "--") != 0) dash++;
    if (dash >= argc - 1) die("no command (usage: walltime %s)", usage);
    struct opt opts[] = { {"measure", NULL}, {"impl", NULL}, {"note", ""} };
    size_t n = sizeof opts / sizeof opts[0];
    parse_opts(dash, argv, opts, n, usage);
    const char *note_text = opt_str(opts, n, "note");

    double t = now_s();
    pid_t child = fork();
    if (child < 0) die("fork: %s", strerror(errno));
    if (child == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd < 0 || dup2(fd, 1) < 0) _exit(126);
        execvp(argv[dash + 1], argv + dash + 1);
        fprintf(stderr, "walltime: error: cannot run %s: %s\n", argv[dash + 1], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(child, &status, 0) < 0)
        if (errno != EINTR) die("waitpid: %s", strerror(errno));
    double ms = (now_s() - t) * 1e3;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("%s failed (%s %d)", argv[dash + 1], WIFEXITED(status) ? "exit" : "signal",
            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    emit(opt_str(opts, n, "measure"), opt_str(opts, n, "impl"), ms, "ms", *note_text ? note_text : NULL);
    return 0;
}
