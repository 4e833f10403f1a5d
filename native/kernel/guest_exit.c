/*
 * guest_exit STATUS: ends the qemu guest, passing STATUS (0..255) out. It writes STATUS to
 * qemu's isa-debug-exit port (iobase 0xf4), which makes qemu exit with (STATUS << 1) | 1;
 * since only 8 bits of an exit status survive, guest.sh also reads the marker line printed
 * here. Without the port (or ioperm), it reboots: qemu runs with -no-reboot, so that ends
 * it too, and guest.sh takes the status from the marker.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/reboot.h>
#include <termios.h>
#include <unistd.h>

#define DEBUG_EXIT_PORT 0xf4

static int parse_status(const char *text, int *status)
{
	char *end;
	long value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < 0 || value > 255)
		return -1;
	*status = (int)value;
	return 0;
}

int main(int argc, char **argv)
{
	int status;

	if (argc != 2 || parse_status(argv[1], &status) != 0) {
		fprintf(stderr, "usage: guest_exit STATUS (0..255)\n");
		return 2;
	}
	printf("@@pspawn-guest-exit %d@@\n", status);
	fflush(stdout);
	/* The console driver sends in the background: let it drain before qemu goes. */
	tcdrain(STDOUT_FILENO);
	tcdrain(STDERR_FILENO);
	sync();
	if (ioperm(DEBUG_EXIT_PORT, 1, 1) == 0)
		outb((unsigned char)(status > 127 ? 127 : status), DEBUG_EXIT_PORT);
	else
		fprintf(stderr, "guest_exit: ioperm: %s\n", strerror(errno));
	/* Still here: no isa-debug-exit device. */
	if (reboot(RB_AUTOBOOT) != 0)
		fprintf(stderr, "guest_exit: reboot: %s\n", strerror(errno));
	return 1;
}
