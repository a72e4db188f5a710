/* The pod sandbox's process (containerd's sandbox_image): it holds the pod's namespaces
 * open and does nothing else. As PID 1 it has no default action for SIGTERM, so it
 * installs handlers: SIGTERM/SIGINT end it at once, SIGCHLD reaps whatever it inherits.
 * Built by hack/image.sh with `gcc -Os -static`. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signo) {
    (void)signo;
    _exit(0);
}

static void reap(int signo) {
    (void)signo;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction sa = {0};
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = stop;
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return 1;
    sa.sa_handler = reap;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    if (sigaction(SIGCHLD, &sa, NULL) != 0)
        return 1;
    for (;;)
        pause();
}
