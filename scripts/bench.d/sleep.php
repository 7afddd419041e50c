<?php
// sleep.php: scripts/bench's php-fpm twin of examples/cases' `sleep=100`:
// waits 100 ms, as a page waiting on a database would, then answers.
header('Content-Type: text/plain; charset=utf-8');
usleep(100000);
echo "slept\n";
