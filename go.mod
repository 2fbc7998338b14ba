module github.com/smartclient/smartclient

go 1.26
