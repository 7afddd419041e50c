<?php
// hello.php: scripts/bench's php-fpm twin of examples/hello: prints
// "{greeting}, {name}!" with greeting the GREETING environment variable
// (default "Hello") and name the "name" query parameter (default "world"),
// cut to 1024 bytes like the guests do. PHP decodes the query string itself.
header('Content-Type: text/plain; charset=utf-8');
$greeting = getenv('GREETING');
if ($greeting === false || $greeting === '') {
    $greeting = 'Hello';
}
$name = $_GET['name'] ?? '';
if (!is_string($name) || $name === '') {
    $name = 'world';
}
echo $greeting, ', ', substr($name, 0, 1024), "!\n";
