"""Which pool lab hosts go on."""

from lxdkvm.machine import storage

OK = storage.BtrfsSupport(True, "available")
NO = storage.BtrfsSupport(False, "mkfs.btrfs is missing")


def pools(*drivers):
    return [{"name": f"p{i}-{d}", "driver": d, "source": ""} for i, d in enumerate(drivers)]


def test_existing_cow_pool_wins_and_btrfs_is_preferred_over_lvm():
    choice = storage.choose_pool(pools("dir", "lvm", "btrfs"), NO)
    assert (choice.name, choice.driver, choice.create, choice.cow) == ("p2-btrfs", "btrfs", False, True)
    assert storage.choose_pool(pools("dir", "zfs"), OK).name == "p1-zfs"


def test_a_loop_btrfs_pool_is_created_when_possible():
    choice = storage.choose_pool(pools("dir"), OK)
    assert (choice.name, choice.driver, choice.create, choice.cow) == (storage.COW_POOL, "btrfs", True, True)
    assert dict(choice.config) == {"size": storage.LOOP_SIZE}


def test_dir_fallback_says_why():
    choice = storage.choose_pool(pools("dir"), NO)
    assert (choice.name, choice.driver, choice.cow, choice.create) == ("p0-dir", "dir", False, False)
    assert "mkfs.btrfs is missing" in choice.reason
    assert storage.choose_pool([], NO).create


def test_btrfs_support_reads_the_kernel_and_tools(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/filesystems").write_text("nodev\tproc\n\text4\n")
    assert "no btrfs" in storage.btrfs_support(tmp_path).reason
    (tmp_path / "proc/filesystems").write_text("nodev\tproc\n\tbtrfs\n")
    (tmp_path / "usr/sbin").mkdir(parents=True)
    (tmp_path / "usr/sbin/mkfs.btrfs").write_text("")
    assert "loop" in storage.btrfs_support(tmp_path).reason
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/loop-control").write_text("")
    assert storage.btrfs_support(tmp_path).ok
