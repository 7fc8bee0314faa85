//! Running commands over a real sshd: exit statuses, output, stdin, timeouts, options.

use crate::harness;

use std::time::Duration;

use harness::{eventually, remote_processes, Sshd};
use rexec::{ErrorKind, ExitStatus, Phase, Session};

async fn connect(sshd: &Sshd) -> Session {
    Session::connect(&sshd.options()).await.unwrap()
}

#[tokio::test]
async fn exit_codes_are_reported_exactly() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    for code in [0u32, 1, 3, 255] {
        let out = s
            .raw_command(format!("exit {code}"))
            .output()
            .await
            .unwrap();
        assert_eq!(out.status, ExitStatus::Exited(code));
        assert_eq!(out.status.code(), Some(code as i32));
        assert_eq!(out.status.success(), code == 0);
    }
}

#[tokio::test]
async fn a_command_killed_by_a_signal_reports_the_signal() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let out = s.raw_command("kill -TERM $$").output().await.unwrap();
    assert_eq!(out.status.signal(), Some("TERM"), "{out:?}");
    assert_eq!(out.status.code(), None);
    assert!(!out.status.success());
    let out = s.raw_command("kill -SEGV $$").output().await.unwrap();
    assert_eq!(out.status.signal(), Some("SEGV"), "{out:?}");
    assert_eq!(
        out.status
            .to_string()
            .split(' ')
            .take(4)
            .collect::<Vec<_>>()
            .join(" "),
        "killed by signal SEGV"
    );
}

#[tokio::test]
async fn stdout_and_stderr_are_kept_apart() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let out = s
        .raw_command(
            "printf 'out1\\n'; printf 'err1\\n' >&2; printf 'out2\\n'; printf 'err2' >&2; exit 4",
        )
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"out1\nout2\n");
    assert_eq!(out.stderr, b"err1\nerr2");
    assert_eq!(out.status, ExitStatus::Exited(4));
}

#[tokio::test]
async fn fifty_megabytes_of_binary_output_arrive_byte_exact() {
    let sshd = Sshd::start();
    let mut data = vec![0u8; 50 * 1000 * 1000];
    let mut seed = harness::random_u64() | 1;
    for chunk in data.chunks_mut(8) {
        // xorshift: fast, every byte value occurs, including NUL and CR/LF.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
    let path = sshd.write_file("big.bin", &data);
    let s = connect(&sshd).await;
    let out = s
        .raw_command("cat")
        .arg(path.to_str().unwrap())
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "50 MB output differs from the file");
    assert!(!out.stdout_truncated);
}

#[tokio::test]
async fn stdin_is_delivered_and_closed() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let out = s
        .raw_command("cat")
        .stdin(b"hello\x00world\n".to_vec())
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"hello\x00world\n");
    // Without stdin the command sees end of file instead of hanging.
    let out = s.raw_command("cat; echo done").output().await.unwrap();
    assert_eq!(out.stdout, b"done\n");
    // A large stdin echoed back: stdin is written while output is read.
    let big: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
    let out = s
        .raw_command("cat")
        .stdin(big.clone())
        .output()
        .await
        .unwrap();
    assert!(out.stdout == big);
}

#[tokio::test]
async fn output_written_just_after_the_exit_status_is_kept() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    // The shell exits at once (exit status sent); its background child writes a moment
    // later and then closes the output: that output belongs to the result.
    let out = s
        .raw_command("(sleep 0.1; echo late; echo late-err >&2) & echo early; exit 7")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Exited(7));
    assert_eq!(out.stdout, b"early\nlate\n");
    assert_eq!(out.stderr, b"late-err\n");
    assert!(!out.output_open_after_exit);
    assert_eq!(out.note(), None);
}

#[tokio::test]
async fn a_timeout_kills_the_remote_process_group() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let marker = format!("sleep 36{:02}", harness::random_u64() % 100);
    // A compound command: the shell does not exec sleep, so only a process group signal
    // reaches it.
    let mut command = s.raw_command(format!("echo started; {marker}; echo never"));
    command.timeout(Duration::from_millis(1500));
    let seen_running = async {
        let m = marker.clone();
        tokio::task::spawn_blocking(move || {
            eventually(Duration::from_secs(10), || !remote_processes(&m).is_empty())
        })
        .await
        .unwrap()
    };
    let (result, seen_running) = tokio::join!(command.output(), seen_running);
    assert!(
        seen_running,
        "the remote command never showed up in the process list"
    );
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.phase(), Some(Phase::Command));
    assert_eq!(err.output().unwrap().stdout, b"started\n");
    assert!(err.to_string().contains("timed out after 1.5s"), "{err}");
    assert!(
        eventually(Duration::from_secs(10), || remote_processes(&marker)
            .is_empty()),
        "remote process survived: {:?}",
        remote_processes(&marker)
    );
    // The session is still usable.
    let out = s.raw_command("echo ok").output().await.unwrap();
    assert_eq!(out.stdout, b"ok\n");
}

#[tokio::test]
async fn a_process_that_ignores_term_is_killed() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let marker = format!("sleep 37{:02}", harness::random_u64() % 100);
    let err = s
        .raw_command(format!("trap '' TERM; {marker}"))
        .timeout(Duration::from_millis(500))
        .kill_grace(Duration::from_millis(500))
        .output()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(eventually(Duration::from_secs(10), || remote_processes(
        &marker
    )
    .is_empty()));
}

#[tokio::test]
async fn several_commands_run_at_once_on_one_session() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let runs = (0..8).map(|i| {
        let s = &s;
        async move { s.raw_command(format!("sleep 0.5; echo {i}")).output().await }
    });
    let outs = futures::future::join_all(runs).await;
    for (i, out) in outs.into_iter().enumerate() {
        assert_eq!(out.unwrap().stdout, format!("{i}\n").into_bytes());
    }
    // And one after another.
    for i in 0..5 {
        let out = s
            .raw_command("echo")
            .arg(i.to_string())
            .output()
            .await
            .unwrap();
        assert_eq!(out.stdout, format!("{i}\n").into_bytes());
    }
}

#[tokio::test]
async fn arguments_env_and_directory_are_quoted() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let out = s
        .raw_command("printf '%s|'")
        .args(["a b", "it's", "$(touch /tmp/pwned)", ""])
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy(), "a b|it's|$(touch /tmp/pwned)||");
    let out = s
        .raw_command("echo \"$GREETING\"; pwd")
        .env("GREETING", "hello; world 'quoted'")
        .current_dir("/tmp")
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy(), "hello; world 'quoted'\n/tmp\n");
    let err = s
        .raw_command("true")
        .env("BAD NAME", "x")
        .output()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let out = s
        .raw_command("echo unreachable")
        .current_dir("/does/not/exist")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(out.stdout, b"");
}

#[tokio::test]
async fn a_pty_merges_output_and_translates_newlines() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let out = s
        .raw_command("test -t 1 && echo tty; echo err >&2")
        .pty(true)
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"tty\r\nerr\r\n");
    assert_eq!(out.stderr, b"");
    let out = s
        .raw_command("test -t 1 && echo tty || echo notty")
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"notty\n");
}

#[tokio::test]
async fn output_beyond_the_cap_is_cut_and_reported() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let out = s
        .raw_command("head -c 100000 /dev/zero; head -c 10 /dev/zero >&2")
        .max_output(1000)
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.stdout_truncated);
    assert_eq!(out.stderr.len(), 10);
    assert!(!out.stderr_truncated);
    assert!(out.status.success());
    let status = s.raw_command("exit 5").status().await.unwrap();
    assert_eq!(status, ExitStatus::Exited(5));
}

#[tokio::test]
async fn check_turns_a_failure_into_an_error_with_the_output() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let ok = s
        .raw_command("echo fine")
        .output()
        .await
        .unwrap()
        .check()
        .unwrap();
    assert_eq!(ok.stdout, b"fine\n");
    let err = s
        .raw_command("echo partial; exit 2")
        .output()
        .await
        .unwrap()
        .check()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CommandFailed);
    assert_eq!(err.output().unwrap().stdout, b"partial\n");
    assert_eq!(
        err.to_string(),
        format!("127.0.0.1:{}: command exited 2", sshd.port)
    );
}

#[tokio::test]
async fn dropping_the_future_stops_the_remote_command() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    let marker = format!("sleep 41{:02}", harness::random_u64() % 100);
    let mut command = s.raw_command(format!("{marker}; echo never"));
    command.kill_grace(Duration::from_millis(500));
    let run = command.output();
    let seen = {
        let m = marker.clone();
        tokio::task::spawn_blocking(move || {
            eventually(Duration::from_secs(10), || !remote_processes(&m).is_empty())
        })
    };
    tokio::select! {
        _ = run => panic!("the command finished by itself"),
        seen = seen => assert!(seen.unwrap(), "the command never started"),
    }
    // The output future is dropped here, with the session still open.
    let m = marker.clone();
    let gone = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(10), || remote_processes(&m).is_empty())
    });
    assert!(
        gone.await.unwrap(),
        "left behind: {:?}",
        remote_processes(&marker)
    );
}

#[tokio::test]
async fn dropping_a_local_command_stops_its_process_group() {
    let s = Session::local("here");
    let marker = format!("sleep 42{:02}", harness::random_u64() % 100);
    let command = s.raw_command(format!("{marker}; echo never"));
    let run = command.output();
    let m = marker.clone();
    let seen = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(10), || local_processes(&m) > 0)
    });
    tokio::select! {
        _ = run => panic!("the command finished by itself"),
        seen = seen => assert!(seen.unwrap()),
    }
    let m = marker.clone();
    let gone = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(10), || local_processes(&m) == 0)
    });
    assert!(gone.await.unwrap());
}

fn local_processes(pattern: &str) -> usize {
    let out = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test]
async fn local_sessions_give_the_same_results() {
    let s = Session::local("here");
    let out = s
        .raw_command("printf out; printf err >&2; exit 3")
        .output()
        .await
        .unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice()),
        (&b"out"[..], &b"err"[..])
    );
    assert_eq!(out.status, ExitStatus::Exited(3));
    let out = s.raw_command("kill -TERM $$").output().await.unwrap();
    assert_eq!(out.status.signal(), Some("TERM"));
    let out = s
        .raw_command("cat")
        .stdin(b"piped".to_vec())
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"piped");
    let err = s
        .raw_command("echo started; sleep 30; echo never")
        .timeout(Duration::from_millis(300))
        .output()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.output().unwrap().stdout, b"started\n");
    assert_eq!(
        s.raw_command("true")
            .pty(true)
            .output()
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn command_quotes_the_program_and_raw_command_runs_shell_code() {
    let sshd = Sshd::start();
    let s = connect(&sshd).await;
    // A program and its arguments are words, never shell code.
    let out = s
        .command("printf")
        .args(["%s|", "a b", "it's", "$(id)", "", ";true"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy(), "a b|it's|$(id)||;true|");
    // The whole of `program` is one word: "echo hi" is not a program.
    let out = s.command("echo hi").output().await.unwrap();
    assert_eq!(out.status, ExitStatus::Exited(127), "{out:?}");
    assert_eq!(out.stdout, b"");
    // The same text through raw_command is shell code.
    let out = s.raw_command("echo hi").output().await.unwrap();
    assert_eq!(out.stdout_lossy(), "hi\n");
    let line = s.command("ls").args(["-l", "a b"]).command_line().unwrap();
    assert_eq!(line, "'ls' -l 'a b'");
    // Words the shell would read as syntax when bare: a reserved word, an assignment
    // (which would make the first argument the program), a comment.
    for program in ["if", "!", "{", "A=b", "#", "case"] {
        let out = s.command(program).arg("true").output().await.unwrap();
        assert_eq!(out.status, ExitStatus::Exited(127), "{program}: {out:?}");
    }
    // bash reads a word starting with `%` as a job however it is quoted: refused.
    let err = s.command("%1").output().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("starting with '%'"), "{err}");
}

/// A program name and arguments from the template tests' hostile values: the program is
/// never run as shell code (the canary is never created) and the arguments arrive byte
/// for byte, through dash (the test user's login shell) and bash.
fn hostile_programs_and_arguments_never_run(user: &str, sshd: &Sshd) {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let session = rt
        .block_on(Session::connect(&sshd.options_as(user)))
        .unwrap();
    let home = crate::template::canary_dir();
    let canary = home.path().join("canary");
    let mut runner = TestRunner::new(Config {
        cases: crate::template::property_cases() / 3,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(
                crate::template::values(&canary),
                proptest::collection::vec(crate::template::values(&canary), 0..4),
            ),
            |(value, args)| {
                // The suffix keeps the name from naming a real program (an interpreter
                // given `-c` would run its argument by request, not by injection); an
                // injection still fires, since the hostile part comes first.
                let program = format!("{value}-rexec-no-such-program");
                let mut cmd = session.command(&program);
                cmd.args(&args).timeout(Duration::from_secs(20));
                let out = rt.block_on(cmd.output());
                if value.starts_with('%') {
                    let err = out
                        .err()
                        .ok_or_else(|| TestCaseError::fail("% not refused"))?;
                    proptest::prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                    return Ok(());
                }
                let out = out.unwrap();
                if canary.exists() {
                    std::fs::remove_file(&canary).unwrap();
                    return Err(TestCaseError::fail(format!("{program:?} ran as code")));
                }
                // One word naming no program: "not found", never a syntax error (2).
                proptest::prop_assert_eq!(&out.status, &ExitStatus::Exited(127), "{:?}", out);
                let mut echo = session.command("printf");
                echo.arg("%s\\001").args(&args).arg("end");
                let out = rt.block_on(echo.output()).unwrap();
                let want: String =
                    args.iter().map(|a| format!("{a}\u{1}")).collect::<String>() + "end\u{1}";
                proptest::prop_assert_eq!(out.stdout_lossy(), want.as_str(), "{:?}", out);
                Ok(())
            },
        )
        .unwrap();
    assert!(!canary.exists());
}

#[test]
fn hostile_program_names_and_arguments_never_run_under_dash() {
    let sshd = Sshd::start();
    hostile_programs_and_arguments_never_run(harness::TEST_USER, &sshd);
}

#[test]
fn hostile_program_names_and_arguments_never_run_under_bash() {
    let sshd = crate::template::bash_sshd();
    hostile_programs_and_arguments_never_run(harness::BASH_USER, &sshd);
}
