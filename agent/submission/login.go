package submission

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login), which go-sasl has only as a client: it asks
// for the user name, then the password; an initial response is the user
// name.
type loginServer struct {
	check func(user, pw string) error
	state int // 0: nothing yet; 1: asked for the user name; 2: asked for the password
	user  string
}

func (l *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch {
	case l.state == 0 && resp == nil:
		l.state = 1
		return []byte("Username:"), false, nil
	case l.state < 2:
		l.state, l.user = 2, string(resp)
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.user, string(resp))
}
