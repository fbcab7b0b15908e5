"""mblfe task, in progress."""
